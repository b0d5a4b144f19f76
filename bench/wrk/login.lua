-- Logins: POST /api/v1/auth/login with the benchmark account's credentials.
-- Usage: BENCH_EMAIL=... BENCH_PASSWORD=... wrk -s login.lua URL -- <unused data file>
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "common.lua")

local body

function init(args)
  body = string.format(
    '{"email":"%s","password":"%s"}', os.getenv("BENCH_EMAIL"), os.getenv("BENCH_PASSWORD")
  )
end

function request()
  return wrk.format("POST", "/api/v1/auth/login", { ["Content-Type"] = "application/json" }, body)
end
