-- W3 search: one or two random vocabulary words (prefix-matched), top 20 by rank.
-- Usage: wrk -s w3_search.lua URL -- <file of vocabulary words, one a line>
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "common.lua")

local words

function init(args)
  words = load_lines(args[1])
  seed_random()
end

function request()
  local q = pick(words)
  if math.random() < 0.5 then
    q = q .. "+" .. pick(words)
  end
  return wrk.format("GET", "/api/v1/products?q=" .. q)
end
