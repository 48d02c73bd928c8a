-- Delete consumers that hold nothing and have been idle at least ARGV[1] ms (processes that are
-- gone), or the consumer named ARGV[2] if it holds nothing (an instance closing). A consumer with
-- pending entries is never deleted: XGROUP DELCONSUMER would drop its entries from the ledger.
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', STREAM, GROUP)
if not ok then return 0 end
local deleted = 0
for _, consumer in ipairs(consumers) do
  local info = {}
  for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
  if info['pending'] == 0 and (info['idle'] >= tonumber(ARGV[1]) or info['name'] == ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', STREAM, GROUP, info['name'])
    deleted = deleted + 1
  end
end
return deleted
