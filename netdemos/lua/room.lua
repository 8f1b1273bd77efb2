-- What every script of the chat room's begins with (see
-- netdemos/chat/redishub.py).  KEYS[1]: the sorted set of live instances,
-- PREFIX:room:instances; ARGV[1]: this instance's name.
local instances, me = KEYS[1], ARGV[1]
local prefix = string.sub(instances, 1, -string.len(':room:instances') - 1)
local channel = prefix .. ':room'
local function namesOf(instance) return prefix .. ':room:names:' .. instance end
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function takenElsewhere(folded)
  for _, other in ipairs(redis.call('ZRANGE', instances, 0, -1)) do
    if other ~= me and redis.call('HEXISTS', namesOf(other), folded) == 1 then
      return true
    end
  end
  return false
end
