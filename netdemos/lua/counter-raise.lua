-- Raise the count to at least ARGV[1], atomically; return the count, and 1
-- if there was a count at all (0: Redis is empty).  It always writes, so that
-- a Redis that refuses writes (full) refuses it: the counter is ready only
-- once numbers can be had.
local found = redis.call('GET', KEYS[1])
local count = math.max(tonumber(found or '0'), tonumber(ARGV[1]))
redis.call('SET', KEYS[1], count)
return {count, found and 1 or 0}
