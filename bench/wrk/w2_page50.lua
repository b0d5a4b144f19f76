-- W2 category page 50 via keyset cursor. The cursors were collected beforehand by walking
-- the server's own next_cursor links (the app's are signed, the reference's are not).
-- Usage: wrk -s w2_page50.lua URL -- <file of "category_id=..&cursor=.." query strings>
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "common.lua")

local queries

function init(args)
  queries = load_lines(args[1])
  seed_random()
end

function request()
  return wrk.format("GET", "/api/v1/products?" .. pick(queries))
end
