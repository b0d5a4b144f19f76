-- W1 product by id: GET /api/v1/products/{id}, a random live product.
-- Usage: wrk -s w1_product.lua URL -- <file of product ids, one a line>
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "common.lua")

local ids

function init(args)
  ids = load_lines(args[1])
  seed_random()
end

function request()
  return wrk.format("GET", "/api/v1/products/" .. pick(ids))
end
