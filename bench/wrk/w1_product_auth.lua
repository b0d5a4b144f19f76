-- W1 with a signed-in caller: GET /api/v1/products/{id} with `Authorization: Bearer`.
-- Usage: BENCH_TOKEN=<access token> wrk -s w1_product_auth.lua URL -- <file of product ids>
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "common.lua")

local ids
local headers

function init(args)
  ids = load_lines(args[1])
  headers = { ["Authorization"] = "Bearer " .. assert(os.getenv("BENCH_TOKEN"), "BENCH_TOKEN") }
  seed_random()
end

function request()
  return wrk.format("GET", "/api/v1/products/" .. pick(ids), headers)
end
