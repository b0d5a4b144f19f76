-- W2 category page 1: 20 live products of a random category and its descendants, newest
-- first. Usage: wrk -s w2_category.lua URL -- <file of category ids, one a line>
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "common.lua")

local ids

function init(args)
  ids = load_lines(args[1])
  seed_random()
end

function request()
  return wrk.format("GET", "/api/v1/products?category_id=" .. pick(ids))
end
