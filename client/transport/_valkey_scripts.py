"""Lua scripts of the Valkey backend (each runs atomically on the server)."""

# Create a channel's consumer group. A topic's first group starts at 0 so messages
# published before any channel existed are not lost (NSQ keeps them for the first channel
# too); later groups start at $ (a new channel gets what is published from now on).
#
# ARGV[2] = '0' forces the start at 0: a group the server lost (restart without
# persistence) is recreated to read everything its stream holds now, all of it published
# since the restart, even when another channel's group came back first.
ENSURE_GROUP = """
local start = '$'
if ARGV[2] == '0' then
  start = '0'
elseif redis.call('EXISTS', KEYS[1]) == 0 then
  start = '0'
elseif #redis.call('XINFO', 'GROUPS', KEYS[1]) == 0 then
  start = '0'
end
local ok, err = pcall(redis.call, 'XGROUP', 'CREATE', KEYS[1], ARGV[1], start, 'MKSTREAM')
if not ok and not string.find(tostring(err), 'BUSYGROUP') then
  return redis.error_reply(tostring(err))
end
return start
"""

# Move due delayed entries into their streams. KEYS: the delay index set, then the delay
# sorted sets (kf:delayed:<stream>). ARGV: now (unix ms), max entries per set, prefix
# length of "kf:delayed:". A member is "<attempts>\\n<nonce>\\n<body>".
MOVE_DUE = """
local moved = 0
local cut = tonumber(ARGV[3])
for i = 2, #KEYS do
  local zkey = KEYS[i]
  local stream = string.sub(zkey, cut + 1)
  local due = redis.call('ZRANGE', zkey, '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[2])
  for _, member in ipairs(due) do
    local a = string.find(member, '\\n', 1, true)
    local b = string.find(member, '\\n', a + 1, true)
    local attempts = string.sub(member, 1, a - 1)
    redis.call('XADD', stream, '*', 'm', string.sub(member, b + 1), 'a', attempts)
    redis.call('ZREM', zkey, member)
    moved = moved + 1
  end
  if redis.call('ZCARD', zkey) == 0 then
    redis.call('SREM', KEYS[1], zkey)
  end
end
return moved
"""

# MOVE_DUE for one delay set, on a cluster (the set and its stream share a slot; the index
# is another key, kept by the caller). KEYS: the delay set, its stream. ARGV: now (unix
# ms), max entries. Returns how many members the set still holds.
MOVE_DUE_ONE = """
local due = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  local a = string.find(member, '\\n', 1, true)
  local b = string.find(member, '\\n', a + 1, true)
  local attempts = string.sub(member, 1, a - 1)
  redis.call('XADD', KEYS[2], '*', 'm', string.sub(member, b + 1), 'a', attempts)
  redis.call('ZREM', KEYS[1], member)
end
return redis.call('ZCARD', KEYS[1])
"""

# Trim a stream below the oldest entry some consumer group still needs: the smallest
# pending id of each group, or its last delivered id when nothing is pending. Entries newer
# than a group's last delivered id were never read by it and are above the cut too.
TRIM_ACKED = """
local function older(a, b)
  local ams, aseq = string.match(a, '(%d+)-(%d+)')
  local bms, bseq = string.match(b, '(%d+)-(%d+)')
  ams, bms = tonumber(ams), tonumber(bms)
  if ams ~= bms then return ams < bms end
  return tonumber(aseq) < tonumber(bseq)
end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then return 0 end
local cut = nil
for _, g in ipairs(groups) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  local floor = info['last-delivered-id']
  if tonumber(info['pending']) > 0 then
    floor = redis.call('XPENDING', KEYS[1], info['name'])[2]
  end
  if cut == nil or older(floor, cut) then cut = floor end
end
if cut == '0-0' then return 0 end
return redis.call('XTRIM', KEYS[1], 'MINID', cut)
"""

# Publish a batch: concurrent publishes to one stream go as one command (the client packs
# and parses one command instead of one per message). KEYS[1]: the stream; ARGV: bodies.
PUBLISH_MANY = """
for i = 1, #ARGV do
  redis.call('XADD', KEYS[1], '*', 'm', ARGV[i])
end
return #ARGV
"""

# Deliver replies: push every body onto the inbox list and (re)arm its expiry, so an inbox
# nobody reads any more goes away. KEYS[1]: the inbox; ARGV[1]: TTL in ms; ARGV[2..]: bodies.
REPLY_MANY = """
local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'list' and kind ~= 'none' then return -1 end
for i = 2, #ARGV do
  redis.call('RPUSH', KEYS[1], ARGV[i])
end
return redis.call('PEXPIRE', KEYS[1], ARGV[1])
"""

# Reply and ack in one step: the reply lands in its inbox and the entry is acknowledged
# together, or neither happens (then the entry is redelivered). KEYS[1]: the stream the
# entries came from; ARGV[1]: the group; ARGV[2]: inbox TTL in ms; then (inbox, body, entry
# id) triples, one per handled message. Inboxes are named in ARGV, as MOVE_DUE's streams
# are: standalone only (on a cluster an inbox is in its own slot: reply, then ack).
#
# An inbox name that holds a key of another type can never take a reply: its entry is left
# unacknowledged and its id returned, so that one message is refused (Undeliverable) while
# the others of the batch go through. XACK by pcall: a group the server lost (restart
# without persistence) has nothing left to acknowledge.
REPLY_ACK = """
local refused = {}
for i = 3, #ARGV, 3 do
  local kind = redis.call('TYPE', ARGV[i]).ok
  if kind == 'list' or kind == 'none' then
    redis.call('RPUSH', ARGV[i], ARGV[i + 1])
    redis.call('PEXPIRE', ARGV[i], ARGV[2])
    redis.pcall('XACK', KEYS[1], ARGV[1], ARGV[i + 2])
  else
    refused[#refused + 1] = ARGV[i + 2]
  end
end
return refused
"""

# Forget consumers that left: every consumer of every group of the stream that holds no
# pending entry and has not been seen for ARGV[1] ms (pod restarts leave one behind each
# time; a live consumer reads every few seconds). One with pending entries is never
# deleted: XGROUP DELCONSUMER would drop them from the group's pending list, and they
# would never be delivered again. KEYS[1]: the stream. Returns how many went.
PRUNE_CONSUMERS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local idle_ms = tonumber(ARGV[1])
local gone = 0
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local group
  for i = 1, #g, 2 do if g[i] == 'name' then group = g[i + 1] end end
  for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], group)) do
    local info = {}
    for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
    if tonumber(info['pending']) == 0 and tonumber(info['idle']) >= idle_ms then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], group, info['name'])
      gone = gone + 1
    end
  end
end
return gone
"""

# Publish unless the de-duplication key is set; set it to the message id. One script, so
# a crash cannot leave a key without its message or a message without its key. KEYS: the
# key, the stream (or, delayed, its delay set), the delay index (on a cluster, where the
# index is in another slot, the caller adds to it). ARGV: the message id, the
# window (ms), the body (or the delay set's member), the due time (unix ms; '' for now).
PUBLISH_ONCE = """
local first = redis.call('GET', KEYS[1])
if first then
  return first
end
if ARGV[4] == '' then
  redis.call('XADD', KEYS[2], '*', 'm', ARGV[3])
else
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
  if #KEYS > 2 then redis.call('SADD', KEYS[3], KEYS[2]) end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
"""
