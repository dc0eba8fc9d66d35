-- Marks an Anthropic-format chain head's "context too long" 400 for a retry on the chain's
-- next candidate. It runs in Envoy as an upstream filter on the head's `p__` slot, whose
-- answers go past the sidecar: a 400 is read whole (Anthropic's error body is small; the
-- headers wait for it), every other answer passes untouched, unread.
--
-- A marked answer gets `x-extproc-failover`, on which the chain route retries (and which the
-- client never sees), and the reason in the request's metadata, where the next attempt's
-- handler reads why its head failed (extproc/proxy/attempt.py): a context too long is no
-- failure of the provider's, so it rests no cooldown for it.

local NAMESPACE = "%NAMESPACE%"
local FAILED_KEY = "%FAILED_KEY%"
local MARKERS = { %MARKERS% }
local READ = 65536 -- bytes of the body searched for a marker

function envoy_on_response(handle)
  if handle:headers():get(":status") ~= "400" then
    return
  end
  local body = handle:body()
  if body == nil then
    return
  end
  local text = body:getBytes(0, math.min(body:length(), READ))
  for _, marker in ipairs(MARKERS) do
    if string.find(text, marker, 1, true) then
      -- Asked for again: a headers object is void once body() has waited.
      handle:headers():replace("%FAILOVER_HEADER%", "context_too_long")
      handle:streamInfo():dynamicMetadata():set(NAMESPACE, FAILED_KEY, "context_too_long")
      return
    end
  end
end
