-- Attempt 1 of a failover chain: the head, on its `p__` slot, whose request the downstream
-- sidecar already rewrote and whose answer goes past the sidecar's failover handler. It runs
-- in Envoy as an upstream filter.
--
-- Request: a translated head's body. The router keeps the client's body for the later
-- candidates (one of them may speak Anthropic's API), so the sidecar sends the head's
-- translation in the request's metadata instead; it takes the body's place here, with its
-- length, and its copy in the metadata is emptied (later attempts need it no more). A native
-- head's request passes untouched: its body was rewritten downstream.
--
-- Answer: a failure (429, 5xx) is written to the request's metadata with its retry-after,
-- where the next attempt's handler reads why its head failed (extproc/proxy/attempt.py) and
-- tells the cooldown table; a 400 is read whole (error bodies are small; the headers wait for
-- it), and a "context too long" one gets `x-extproc-failover`, on which the chain route
-- retries (the client never sees it), and its reason, which rests no cooldown. When the
-- metadata has the body's key (a translated head; empty for a native one with log_tokens),
-- the answer is marked for the downstream sidecar, which translates it or reads its counts.

local NAMESPACE = "%NAMESPACE%"
local FAILED_KEY = "%FAILED_KEY%"
local RETRY_AFTER_KEY = "%RETRY_AFTER_KEY%"
local BODY_KEY = "%BODY_KEY%"
local MARKERS = { %MARKERS% }
local READ = 65536 -- bytes of the body searched for a marker

function envoy_on_request(handle)
  local decided = handle:streamInfo():dynamicMetadata():get(NAMESPACE)
  local translation = decided and decided[BODY_KEY]
  if translation == nil or translation == "" then
    return
  end
  handle:body():setBytes(translation)
  -- Asked for again: a headers object is void once body() has waited.
  handle:headers():replace("content-length", tostring(#translation))
  handle:streamInfo():dynamicMetadata():set(NAMESPACE, BODY_KEY, "")
end

function envoy_on_response(handle)
  local metadata = handle:streamInfo():dynamicMetadata()
  local decided = metadata:get(NAMESPACE)
  local headers = handle:headers()
  if decided and decided[BODY_KEY] ~= nil then
    headers:replace("%HEAD_ANSWER_HEADER%", "1")
  end
  local status = tonumber(headers:get(":status")) or 0
  if status == 429 or status >= 500 then
    metadata:set(NAMESPACE, FAILED_KEY, tostring(status))
    local retry_after = headers:get("retry-after")
    local retry_after_ms = tonumber(headers:get("retry-after-ms") or "")
    if retry_after == nil and retry_after_ms ~= nil then
      retry_after = string.format("%.3f", retry_after_ms / 1000)
    end
    if retry_after ~= nil then
      metadata:set(NAMESPACE, RETRY_AFTER_KEY, retry_after)
    end
    return
  end
  if status ~= 400 then
    return
  end
  local body = handle:body()
  if body == nil then
    return
  end
  local text = body:getBytes(0, math.min(body:length(), READ))
  for _, marker in ipairs(MARKERS) do
    if string.find(text, marker, 1, true) then
      -- Asked for again, as in envoy_on_request.
      handle:headers():replace("%FAILOVER_HEADER%", "context_too_long")
      handle:streamInfo():dynamicMetadata():set(NAMESPACE, FAILED_KEY, "context_too_long")
      return
    end
  end
end
