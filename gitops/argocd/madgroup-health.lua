-- Argo CD health check for MadGroup (madgroup.io/v1alpha1), from the conditions the
-- operator writes (kstatus's vocabulary): Ready, Reconciling, Stalled, Paused.
--
--   Stalled=True                      -> Degraded    (a bad spec, a missing Secret, ...)
--   Paused=True                       -> Suspended   (spec.paused or the pause annotation)
--   observedGeneration < generation   -> Progressing (the operator has not seen the edit)
--   Ready=True                        -> Healthy
--   anything else                     -> Progressing (Reconciling's message, else Ready's)
--
-- Install: gitops/argocd/argocd-cm.yaml (resource.customizations.health.madgroup.io_MadGroup).
local hs = {}

local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

local function said(c, default)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return default
end

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report on this MadGroup"
  return hs
end

local stalled = condition("Stalled")
if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = said(stalled, "Stalled")
  return hs
end

local paused = condition("Paused")
if is_true(paused) then
  hs.status = "Suspended"
  hs.message = said(paused, "Paused")
  return hs
end

local generation = obj.metadata and obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local ready = condition("Ready")
if is_true(ready) then
  hs.status = "Healthy"
  hs.message = said(ready, "Ready")
  return hs
end

hs.status = "Progressing"
hs.message = said(condition("Reconciling"), said(ready, "Rolling out"))
return hs
