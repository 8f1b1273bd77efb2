-- This instance is stopping: its members leave the room with it.
local gone = redis.call('HVALS', namesOf(me))
redis.call('DEL', namesOf(me))
redis.call('ZREM', instances, me)
if #gone > 0 then
  redis.call('PUBLISH', channel, cjson.encode({i = me, s = 0,
    e = {{t = 'gone', names = gone, w = 'left (server shutting down)'}}}))
end
return 1
