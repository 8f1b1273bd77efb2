-- ARGV[2]: the presence TTL in ms; ARGV[3], ARGV[4], ...: casefolded name and
-- name of each member of this instance.  Registers this instance with those of
-- its members whose names nobody else took meanwhile; returns the others, and
-- every other live instance's members.
local ttl = tonumber(ARGV[2])
local at = now()
redis.call('ZADD', instances, at + ttl, me)
redis.call('DEL', namesOf(me))
local kept, refused = {}, {}
for i = 3, #ARGV, 2 do
  if takenElsewhere(ARGV[i]) then
    table.insert(refused, ARGV[i + 1])
  else
    redis.call('HSET', namesOf(me), ARGV[i], ARGV[i + 1])
    table.insert(kept, ARGV[i + 1])
  end
end
redis.call('PEXPIRE', namesOf(me), ttl * 3)
redis.call('PEXPIRE', instances, ttl * 3)
local others = {}
for _, other in ipairs(redis.call('ZRANGEBYSCORE', instances, at, '+inf')) do
  if other ~= me then
    table.insert(others, other)
    table.insert(others, redis.call('HVALS', namesOf(other)))
  end
end
if #kept > 0 then
  redis.call('PUBLISH', channel,
    cjson.encode({i = me, s = 0, e = {{t = 'sync', names = kept}}}))
end
return {refused, others}
