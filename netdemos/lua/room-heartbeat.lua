-- ARGV[2]: the presence TTL in ms.  Renews this instance's presence, and takes
-- every instance whose presence expired out of the room, publishing that its
-- members are gone.  Returns -1 if this instance itself had been taken out.
local ttl = tonumber(ARGV[2])
local at = now()
if not redis.call('ZSCORE', instances, me) then
  return -1
end
redis.call('ZADD', instances, at + ttl, me)
redis.call('PEXPIRE', namesOf(me), ttl * 3)
redis.call('PEXPIRE', instances, ttl * 3)
local reaped = 0
for _, dead in ipairs(redis.call('ZRANGEBYSCORE', instances, '-inf', '(' .. at)) do
  local gone = redis.call('HVALS', namesOf(dead))
  redis.call('DEL', namesOf(dead))
  redis.call('ZREM', instances, dead)
  if #gone > 0 then
    redis.call('PUBLISH', channel, cjson.encode({i = dead, s = 0,
      e = {{t = 'gone', names = gone, w = 'left (lost with its server)'}}}))
  end
  reaped = reaped + 1
end
return reaped
