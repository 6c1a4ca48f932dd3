"""The Lua side of the inbox protocol (see ``jobs.inbox`` for the schema and the rules).

Every script gets ``PRELUDE``: the execution state table (from ``jobs.status``) and
the helpers that implement fencing: ``registered`` (a worker's registration is its
token) and ``fence`` (a scheduler's epoch against the highest one the actor has seen).
Values in hashes are JSON, so statuses compare as ``'"RUNNING"'``.
"""

from __future__ import annotations

from jobs.keys import INBOX_GROUP
from jobs.status import accepts_lua, transitions_lua

PRELUDE = f"""
local GROUP = '{INBOX_GROUP}'
local MOVES = {transitions_lua()}
local ACCEPTS = {accepts_lua()}
local function may_move(from, to)
  local edges = MOVES[from]
  return edges ~= nil and edges[to] == true
end
local function registered(workers, wid)
  return redis.call('HEXISTS', workers, wid) == 1
end
local function fence(actor, epoch)
  if redis.call('EXISTS', actor) == 0 then return false end
  local seen = tonumber(redis.call('HGET', actor, 'fence') or '0')
  epoch = tonumber(epoch)
  if epoch < seen then return false end
  if epoch > seen then redis.call('HSET', actor, 'fence', epoch) end
  return true
end
local function ack(inbox, entry)
  if entry and entry ~= '' then
    redis.call('XACK', inbox, GROUP, entry)
    redis.call('XDEL', inbox, entry)
  end
end
local function deliver(inbox, exec, eid)
  local id = redis.call('XADD', inbox, '*', 'eid', eid)
  redis.call('HSET', exec, 'inbox_entry', cjson.encode(id))
end
local function hset_pairs(key, argv, first)
  if #argv > first then redis.call('HSET', key, unpack(argv, first)) end
end
"""

# KEYS: actor, exec, binary, executions, queued, inbox. ARGV: eid, score, has_binary,
# binary, the sender's right, then field/value pairs. The sender's right: '' (checked
# by the caller), '*' (an admin), or the sender's name as JSON, which must be the
# actor's owner ('check' otherwise: the caller checks shares and aliases itself); with
# '*' or a name, the execution takes the actor's revision.
POST = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'gone' end
if ARGV[5] ~= '' and ARGV[5] ~= '*' and redis.call('HGET', KEYS[1], 'owner') ~= ARGV[5] then
  return 'check'
end
if not ACCEPTS[status] then return status end
hset_pairs(KEYS[2], ARGV, 6)
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[2], 'revision', redis.call('HGET', KEYS[1], 'revision'))
end
if ARGV[3] == '1' then redis.call('SET', KEYS[3], ARGV[4]) end
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1])
deliver(KEYS[6], KEYS[2], ARGV[1])
return 'ok'
"""

# KEYS: workers, queued, exec, actor, inbox, orphans, claimed. ARGV: wid, eid, revision, entry,
# wid_json. A stateful actor takes no new message while a run of a dead worker waits to
# be adopted ('busy': the entry stays with this worker, which adopts first).
CLAIM = """
if not registered(KEYS[1], ARGV[1]) then return 'fenced' end
local revision = redis.call('HGET', KEYS[4], 'revision')
if not revision then ack(KEYS[5], ARGV[4]); return 'gone' end
local queued = redis.call('ZSCORE', KEYS[2], ARGV[2])
if tonumber(revision) ~= tonumber(ARGV[3]) then
  ack(KEYS[5], ARGV[4])
  if queued then deliver(KEYS[5], KEYS[3], ARGV[2]) end
  return 'stale'
end
if not queued then ack(KEYS[5], ARGV[4]); return 'gone' end
if redis.call('HGET', KEYS[4], 'stateless') == 'false' and
   redis.call('ZCARD', KEYS[6]) > 0 then return 'busy' end
local status = redis.call('HGET', KEYS[3], 'status')
local holder = redis.call('HGET', KEYS[3], 'worker_id')
if status ~= '"SUBMITTED"' or (holder and holder ~= 'null') then
  redis.call('ZREM', KEYS[2], ARGV[2]); ack(KEYS[5], ARGV[4]); return 'gone'
end
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[3], 'worker_id', ARGV[5])
redis.call('SADD', KEYS[7], ARGV[2])
return 'claimed'
"""

# KEYS: workers, orphans, exec, claimed. ARGV: wid, eid, wid_json. Take over a dead
# worker's run.
ADOPT = """
if not registered(KEYS[1], ARGV[1]) then return 'fenced' end
if redis.call('ZREM', KEYS[2], ARGV[2]) == 0 then return 'gone' end
local status = redis.call('HGET', KEYS[3], 'status')
local holder = redis.call('HGET', KEYS[3], 'worker_id') or 'null'
if (status ~= '"SUBMITTED"' and status ~= '"RUNNING"') or holder ~= 'null' then
  return 'gone'
end
redis.call('HSET', KEYS[3], 'worker_id', ARGV[3])
redis.call('SADD', KEYS[4], ARGV[2])
return 'adopt'
"""

# KEYS: workers, exec. ARGV: wid, wid_json, then field/value pairs.
RUNNING = """
if not registered(KEYS[1], ARGV[1]) then return 'fenced' end
if redis.call('HGET', KEYS[2], 'worker_id') ~= ARGV[2] then return 'lost' end
local status = redis.call('HGET', KEYS[2], 'status')
if not may_move(status, '"RUNNING"') then return 'illegal' end
redis.call('HSET', KEYS[2], 'status', '"RUNNING"')
hset_pairs(KEYS[2], ARGV, 3)
return 'ok'
"""

# KEYS: workers, exec, binary, events, inbox, queued, orphans, claimed, totals. ARGV: wid,
# wid_json,
# entry,
# status_json, eid, maxlen, then field/value pairs. An empty wid finishes without a
# worker (the scheduler failing messages of an actor whose image is gone).
FINISH = """
if ARGV[1] ~= '' and not registered(KEYS[1], ARGV[1]) then return 'fenced' end
local status = redis.call('HGET', KEYS[2], 'status')
if not status then ack(KEYS[5], ARGV[3]); return 'gone' end
if ARGV[1] ~= '' and redis.call('HGET', KEYS[2], 'worker_id') ~= ARGV[2] then
  return 'lost'
end
if not may_move(status, ARGV[4]) then ack(KEYS[5], ARGV[3]); return 'illegal' end
hset_pairs(KEYS[2], ARGV, 7)
for i = 7, #ARGV, 2 do  -- the actor's totals, so listing executions never sums records
  if ARGV[i] == 'cpu' or ARGV[i] == 'io' or ARGV[i] == 'runtime' then
    local value = cjson.decode(ARGV[i + 1])
    if type(value) == 'number' then redis.call('HINCRBYFLOAT', KEYS[9], ARGV[i], value) end
  end
end
redis.call('HINCRBY', KEYS[9], 'executions', 1)
redis.call('HSET', KEYS[2], 'status', ARGV[4])
redis.call('HDEL', KEYS[2], 'orphan', 'msg', 'env')  -- the message is not kept after its run
redis.call('DEL', KEYS[3])
redis.call('ZREM', KEYS[6], ARGV[5])
redis.call('ZREM', KEYS[7], ARGV[5])
redis.call('SREM', KEYS[8], ARGV[5])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*', 'event', 'EXECUTION_COMPLETE',
           'execution_id', ARGV[5], 'status', cjson.decode(ARGV[4]))
ack(KEYS[5], ARGV[3])
return 'ok'
"""

# KEYS: workers, exec, queued, inbox, executions, orphans, claimed. ARGV: wid, wid_json,
# entry, eid, count a refusal ('1'/'0'), most refusals. A run the engine keeps refusing
# while it answers is not given back past ``most refusals`` ('exhausted': the worker
# ends it).
# An adopted orphan goes back among the orphans (it keeps its place before new messages).
RELEASE = """
if not registered(KEYS[1], ARGV[1]) then return 'fenced' end
if redis.call('HGET', KEYS[2], 'worker_id') ~= ARGV[2] then return 'lost' end
local status = redis.call('HGET', KEYS[2], 'status')
local orphan = redis.call('HGET', KEYS[2], 'orphan') == 'true'
if status ~= '"SUBMITTED"' and not orphan then return 'illegal' end
if ARGV[5] == '1' and
   redis.call('HINCRBY', KEYS[2], 'refusals', 1) > tonumber(ARGV[6]) then
  return 'exhausted'
end
redis.call('HSET', KEYS[2], 'worker_id', 'null')
redis.call('SREM', KEYS[7], ARGV[4])
local score = redis.call('ZSCORE', KEYS[5], ARGV[4]) or '0'
ack(KEYS[4], ARGV[3])
if orphan then
  redis.call('ZADD', KEYS[6], score, ARGV[4])
else
  redis.call('ZADD', KEYS[3], score, ARGV[4])
  deliver(KEYS[4], KEYS[2], ARGV[4])
end
return 'ok'
"""

# KEYS: exec, binary, events, queued, inbox. ARGV: eid, status_json, maxlen, then pairs.
DROP = """
if not redis.call('ZSCORE', KEYS[4], ARGV[1]) then return 'claimed' end
local status = redis.call('HGET', KEYS[1], 'status')
local holder = redis.call('HGET', KEYS[1], 'worker_id')
if status ~= '"SUBMITTED"' or (holder and holder ~= 'null')
   or redis.call('HGET', KEYS[1], 'orphan') == 'true' then return 'claimed' end
redis.call('ZREM', KEYS[4], ARGV[1])
local entry = redis.call('HGET', KEYS[1], 'inbox_entry')
if entry then ack(KEYS[5], cjson.decode(entry)) end
hset_pairs(KEYS[1], ARGV, 4)
redis.call('HSET', KEYS[1], 'status', ARGV[2])
redis.call('DEL', KEYS[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'event', 'EXECUTION_COMPLETE',
           'execution_id', ARGV[1], 'status', cjson.decode(ARGV[2]))
return 'ok'
"""

# KEYS: actor, workers, hb, exec, queued, inbox, executions, events, orphans, claimed.
# An empty entry resolves an execution the dead worker held without an inbox entry.
# ARGV: epoch, dead wid, dead wid_json, entry, eid, most recoveries, give-up fields (JSON),
# events maxlen. A message that never started and whose workers keep dying (a poison
# message) ends ERROR after ``most recoveries`` instead of killing workers forever.
RECOVER = """
if not fence(KEYS[1], ARGV[1]) then return 'fenced' end
if redis.call('EXISTS', KEYS[3]) == 1 and registered(KEYS[2], ARGV[2]) then return 'alive' end
local status = redis.call('HGET', KEYS[4], 'status')
if not status or status == '"COMPLETE"' or status == '"ERROR"' then
  ack(KEYS[6], ARGV[4]); return 'acked'
end
local holder = redis.call('HGET', KEYS[4], 'worker_id') or 'null'
if holder == 'null' then
  ack(KEYS[6], ARGV[4])
  if redis.call('ZSCORE', KEYS[5], ARGV[5]) then
    deliver(KEYS[6], KEYS[4], ARGV[5]); return 'redelivered'
  end
  return 'acked'
end
if holder ~= ARGV[3] then ack(KEYS[6], ARGV[4]); return 'stale' end
redis.call('SREM', KEYS[10], ARGV[5])
if status == '"SUBMITTED"' and
   redis.call('HINCRBY', KEYS[4], 'recoveries', 1) > tonumber(ARGV[6]) then
  for k, v in pairs(cjson.decode(ARGV[7])) do redis.call('HSET', KEYS[4], k, v) end
  redis.call('HSET', KEYS[4], 'status', '"ERROR"', 'worker_id', 'null')
  redis.call('ZREM', KEYS[5], ARGV[5])
  redis.call('XADD', KEYS[8], 'MAXLEN', '~', ARGV[8], '*', 'event', 'EXECUTION_COMPLETE',
             'execution_id', ARGV[5], 'status', 'ERROR')
  ack(KEYS[6], ARGV[4])
  return 'given-up'
end
redis.call('HSET', KEYS[4], 'worker_id', 'null', 'orphan', 'true')
local score = redis.call('ZSCORE', KEYS[7], ARGV[5]) or '0'
redis.call('ZADD', KEYS[9], score, ARGV[5])
ack(KEYS[6], ARGV[4])
return 'orphaned'
"""

# KEYS: exec. Returns the holder (JSON) of a live execution after flagging it, or 'final'.
CANCEL = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'gone' end
if status == '"COMPLETE"' or status == '"ERROR"' then return 'final' end
redis.call('HSET', KEYS[1], 'cancel_requested', 'true')
return redis.call('HGET', KEYS[1], 'worker_id') or 'null'
"""

# KEYS: actor, workers, hb. ARGV: epoch, wid, record_json, ttl_ms, limit, revision.
REGISTER = """
if not fence(KEYS[1], ARGV[1]) then return 'fenced' end
if redis.call('HGET', KEYS[1], 'status') ~= '"READY"' then return 'not-ready' end
if tonumber(redis.call('HGET', KEYS[1], 'revision')) ~= tonumber(ARGV[6]) then
  return 'stale'
end
if tonumber(ARGV[5]) >= 0 and redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[5]) then
  return 'full'
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('SET', KEYS[3], '1', 'PX', ARGV[4])
return 'ok'
"""

# KEYS: actor, workers, hb, control. ARGV: epoch, wid, force.
REMOVE = """
if not fence(KEYS[1], ARGV[1]) then
  if redis.call('EXISTS', KEYS[1]) == 1 then return 'fenced' end
end
if ARGV[3] ~= '1' and redis.call('EXISTS', KEYS[3]) == 1 then return 'alive' end
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[3], KEYS[4])
return 'ok'
"""

# KEYS: workers, hb. ARGV: wid, ttl_ms, changes_json (may be '{}').
BEAT = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
if ARGV[3] ~= '{}' then
  local record = cjson.decode(raw)
  for k, v in pairs(cjson.decode(ARGV[3])) do record[k] = v end
  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(record))
end
if ARGV[2] ~= '0' then redis.call('SET', KEYS[2], '1', 'PX', ARGV[2]) end
return 1
"""

# KEYS: actor. ARGV: field/value pairs. Never recreates a deleted actor.
UPDATE_ACTOR = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
hset_pairs(KEYS[1], ARGV, 1)
return 1
"""

# KEYS: actor. ARGV: epoch, revision, then pairs. The scheduler's verdict on one revision.
ACTOR_VERDICT = """
if not fence(KEYS[1], ARGV[1]) then return 'fenced' end
if tonumber(redis.call('HGET', KEYS[1], 'revision')) ~= tonumber(ARGV[2]) then
  return 'stale'
end
if redis.call('HGET', KEYS[1], 'status') == '"SHUTTING_DOWN"' then return 'deleting' end
hset_pairs(KEYS[1], ARGV, 3)
return 'ok'
"""

# KEYS: lock, epoch. ARGV: identity, ttl_ms. Returns our epoch, or 0 (someone else holds it).
ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if not holder then
  local epoch = redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. epoch, 'PX', ARGV[2])
  return epoch
end
local space = string.find(holder, ' [^ ]*$')
if string.sub(holder, 1, space - 1) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(string.sub(holder, space + 1))
end
return 0
"""

# KEYS: lock. ARGV: identity. Compare-and-delete.
RELEASE_LOCK = """
local holder = redis.call('GET', KEYS[1])
if holder and string.sub(holder, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
