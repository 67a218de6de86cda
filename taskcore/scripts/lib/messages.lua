-- The task id a Celery message of synthgate.generate carries (kombu's envelope, whose
-- headers.argsrepr is "['<id>']", see taskcore/celery_queue.py), or false for any other.
local function msg_task_id(message)
  local ok, decoded = pcall(cjson.decode, message)
  local id = ok and type(decoded) == 'table' and type(decoded.headers) == 'table'
    and decoded.headers.argsrepr
  return type(id) == 'string' and string.match(id, "^%[?'([^']+)'") or false
end
