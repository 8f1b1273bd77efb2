-- Hand out ARGV[1] numbers: add them to the count, and tell every instance
-- the new count, the highest number handed out so far, before the one that
-- asked has it (the channel is ARGV[2]).  Return it.
local last = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], last)
return last
