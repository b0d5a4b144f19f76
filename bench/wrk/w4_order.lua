-- W4 place order: POST /api/v1/orders as a signed-in customer, 1-3 random products,
-- a fresh Idempotency-Key per request.
-- Usage: wrk -s w4_order.lua URL -- <file of "T <token>" and "P <product id>" lines>
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "common.lua")

local tokens, products = {}, {}
local counter = 0
local prefix

function init(args)
  for _, line in ipairs(load_lines(args[1])) do
    local kind, value = line:match("^(%a) (.+)$")
    if kind == "T" then tokens[#tokens + 1] = value else products[#products + 1] = value end
  end
  seed_random()
  prefix = tostring(math.random(1, 1000000000))
end

function request()
  counter = counter + 1
  local count = math.random(1, 3)
  local chosen, lines = {}, {}
  while #lines < count do
    local id = pick(products)
    if not chosen[id] then
      chosen[id] = true
      lines[#lines + 1] = string.format('{"product_id":"%s","quantity":1}', id)
    end
  end
  local headers = {
    ["Authorization"] = "Bearer " .. pick(tokens),
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = prefix .. "-" .. counter,
  }
  return wrk.format("POST", "/api/v1/orders", headers, '{"lines":[' .. table.concat(lines, ",") .. "]}")
end
