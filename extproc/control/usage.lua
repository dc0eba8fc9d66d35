-- Token counts and cost of an Anthropic-format answer that the sidecar does not read, for
-- Envoy's access log. It runs inside Envoy, on the answer's chunks as they pass, so a stream
-- costs no round trip to the sidecar per chunk (what listener.log_tokens costs).
--
-- The sidecar asks for it per request: its decision metadata then holds `price`, the routed
-- model's USD per million tokens as "input,output,cache_read,cache_write" (empty when
-- unknown: the counts are logged without a cost). Counts are read from each `"usage"` object
-- of the answer (message_start and message_delta events, or a JSON answer's own); a later
-- count replaces an earlier one, as Anthropic's are cumulative. Only the answer's first HEAD
-- bytes and each chunk's first CARRY and last TAIL bytes are read. Text and tool input inside
-- a stream are JSON strings, whose quotes are escaped: they can't look like a count; in a
-- JSON answer, `usage` comes after the content, so its counts are the last ones read. No
-- envoy_on_request: Envoy then runs nothing on the request path.
--
-- For Claude Code's status line, the decision metadata holds the request's `session` too:
-- once the answer has passed, its counts and cost go to the sidecar's health port in one
-- asynchronous POST /sessions/<id>/answered (extproc.proxy.server), which the answer does
-- not wait for, and whose reply nobody reads.

local NAMESPACE = "%NAMESPACE%"
local COUNTS = {
  "input_tokens",
  "output_tokens",
  "cache_read_input_tokens",
  "cache_creation_input_tokens",
}
local CARRY = 512 -- bytes kept from one chunk to the next: a usage object split between two
local HEAD = 4096 -- bytes read from the answer's start: message_start and its usage
local TAIL = 2048 -- bytes read from each chunk's end: message_delta's (or a JSON answer's) usage
local REPORT_CLUSTER = "%REPORT_CLUSTER%" -- the sidecar's health port
local SECRET = "%SECRET%" -- the sidecar's secret, or empty
local REPORT_TIMEOUT_MS = 5000

local function price_of(text)
  local prices = {}
  for number in string.gmatch(text, "[^,]+") do
    prices[#prices + 1] = tonumber(number)
  end
  if #prices == 4 then
    return prices
  end
  return nil
end

local function read_counts(text, counts)
  for _, name in ipairs(COUNTS) do
    for value in string.gmatch(text, '"' .. name .. '"%s*:%s*(%d+)') do
      counts[name] = tonumber(value)
    end
  end
end

-- The counts and cost, to the session's record in the sidecar (a session id as the sidecar
-- keeps them: anything else has no record there).
local function report(handle, session, counts, cost)
  if #session > 128 or not string.find(session, "^[%w_.-]+$") then
    return
  end
  local fields = {}
  for _, name in ipairs(COUNTS) do
    if counts[name] then
      fields[#fields + 1] = string.format('"%s":%d', name, counts[name])
    end
  end
  if cost then
    fields[#fields + 1] = string.format('"cost_usd":%.8f', cost)
  end
  local body = "{" .. table.concat(fields, ",") .. "}"
  local headers = {
    [":method"] = "POST",
    [":path"] = "/sessions/" .. session .. "/answered",
    [":authority"] = REPORT_CLUSTER,
    ["content-type"] = "application/json",
    ["content-length"] = tostring(#body),
  }
  if SECRET ~= "" then
    headers["x-extproc-secret"] = SECRET
  end
  handle:httpCall(REPORT_CLUSTER, headers, body, {
    asynchronous = true,
    timeout_ms = REPORT_TIMEOUT_MS,
  })
end

function envoy_on_response(handle)
  local metadata = handle:streamInfo():dynamicMetadata():get(NAMESPACE)
  local price_text = metadata and metadata["price"]
  local status = tonumber(handle:headers():get(":status") or "0")
  if price_text == nil or status < 200 or status >= 300 then
    return
  end
  local counts = {}
  local carried = ""
  local seen = 0
  for chunk in handle:bodyChunks() do
    -- Usage objects stand at an answer's start (message_start) and end (message_delta, or
    -- a JSON answer's own): the middle of a long chunk, text and tool input only, is not
    -- copied into Lua (copies of every byte cost Envoy memory until Lua collects them).
    local length = chunk:length()
    local head = math.min(length, math.max(CARRY, HEAD - seen))
    local texts
    if head + TAIL >= length then
      texts = { carried .. chunk:getBytes(0, length) }
    else
      texts = { carried .. chunk:getBytes(0, head), chunk:getBytes(length - TAIL, TAIL) }
    end
    for _, text in ipairs(texts) do
      if string.find(text, '"usage"', 1, true) then
        read_counts(text, counts)
      end
    end
    carried = string.sub(texts[#texts], -CARRY)
    seen = seen + length
  end
  local found = false
  local dynamic = handle:streamInfo():dynamicMetadata()
  for _, name in ipairs(COUNTS) do
    if counts[name] then
      dynamic:set(NAMESPACE, name, counts[name])
      found = true
    end
  end
  if not found then
    return
  end
  local prices = price_of(price_text)
  local cost = nil
  if prices then
    cost = ((counts.input_tokens or 0) * prices[1]
      + (counts.output_tokens or 0) * prices[2]
      + (counts.cache_read_input_tokens or 0) * prices[3]
      + (counts.cache_creation_input_tokens or 0) * prices[4]) / 1000000
    dynamic:set(NAMESPACE, "cost_usd", tonumber(string.format("%.8f", cost)))
  end
  local session = metadata["session"]
  if session then
    report(handle, session, counts, cost)
  end
end
