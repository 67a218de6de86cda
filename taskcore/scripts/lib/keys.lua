-- Every Redis key name, as taskcore/redis_keys.py spells it (tests/taskcore/test_redis_keys.py
-- checks that both agree).
local function k_tenant(name) return 'synthgate:tenant:' .. name end
local function k_api_key(key_hash) return 'synthgate:apikey:' .. key_hash end
local function k_key_info(key_id) return 'synthgate:key:' .. key_id end
local function k_active(name) return 'synthgate:tenant:' .. name .. ':active' end
local function k_usage(name, day) return 'synthgate:usage:' .. name .. ':' .. day end
local function k_task(task_id) return 'synthgate:task:' .. task_id end
local function k_tasks(tenant) return 'synthgate:tenant:' .. tenant .. ':tasks' end
local function k_model_tasks(tenant, model)
  return 'synthgate:tenant:' .. tenant .. ':model:' .. model .. ':tasks'
end
local function k_status_tasks(tenant, status)
  return 'synthgate:tenant:' .. tenant .. ':status:' .. status .. ':tasks'
end
local function k_model_status_tasks(tenant, model, status)
  return 'synthgate:tenant:' .. tenant .. ':model:' .. model .. ':status:' .. status .. ':tasks'
end
local function k_expiring(tenant) return 'synthgate:tenant:' .. tenant .. ':expiring' end
local function k_webhooks_due() return 'synthgate:webhooks:due' end
local function k_reaper_sweep() return 'synthgate:reaper:sweep' end
local function k_reaper_unswept() return 'synthgate:reaper:unswept' end
local function k_queue(pool) return pool end
local function k_pending(pool, tenant) return 'synthgate:pool:' .. pool .. ':pending:' .. tenant end
local function k_pending_level(pending, level)
  if level == 'normal' then return pending end
  return pending .. ':' .. level
end
local function k_backlog(pool) return 'synthgate:pool:' .. pool .. ':backlog' end
local function k_ready(pool) return 'synthgate:pool:' .. pool .. ':ready' end
local function k_fair(pool) return 'synthgate:pool:' .. pool .. ':fair' end
local function k_starting(pool) return 'synthgate:pool:' .. pool .. ':starting' end
local function k_claimed(pool) return 'synthgate:pool:' .. pool .. ':claimed' end
local function k_leases(pool) return 'synthgate:pool:' .. pool .. ':leases' end
local function k_upstream_running(account, model)
  return 'synthgate:upstream:' .. account .. ':model:' .. model .. ':running'
end
local function k_upstream_running_sets() return 'synthgate:upstream:running-sets' end
