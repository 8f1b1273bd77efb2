-- ARGV[2]: a batch of events from this instance.  A join or a rename of a name
-- another instance holds is refused: published as "join-refused" or
-- "rename-refused", for this instance to undo.
local batch = cjson.decode(ARGV[2])
for _, event in ipairs(batch.e) do
  if type(event) ~= 'table' then
    -- a line: nothing to do but publish it
  elseif event.t == 'join' or event.t == 'rename' then
    if takenElsewhere(event.f) then
      event.t = event.t .. '-refused'
    else
      redis.call('HSET', namesOf(me), event.f, event.n)
      if event.t == 'rename' and event.of ~= event.f then
        redis.call('HDEL', namesOf(me), event.of)
      end
    end
  elseif event.t == 'leave' then
    redis.call('HDEL', namesOf(me), event.f)
  end
end
redis.call('PUBLISH', channel, cjson.encode(batch))
return 1
