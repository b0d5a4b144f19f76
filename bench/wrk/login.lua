-- Logins: POST /api/v1/auth/login, a random benchmark account each time (they share one
-- password; every account has its own attempt cap, so the load is spread over many).
-- Usage: BENCH_PASSWORD=... wrk -s login.lua URL -- <file of account emails>
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "common.lua")

local emails
local password

function init(args)
  emails = load_lines(args[1])
  password = os.getenv("BENCH_PASSWORD")
  seed_random()
end

function request()
  local body = string.format('{"email":"%s","password":"%s"}', pick(emails), password)
  return wrk.format("POST", "/api/v1/auth/login", { ["Content-Type"] = "application/json" }, body)
end
