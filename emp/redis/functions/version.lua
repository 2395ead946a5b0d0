--[[
  emp_version (read-only): the loaded library's version, "<schema>:<source digest>".
  library.py compares it before loading, so an older client never replaces a newer library.

  KEYS     none
  ARGV     none
  Reply    version string
  Errors   none
  Events   none
]]

local function version(keys, args)
  return D.VERSION
end

redis.register_function{function_name = 'emp_version', callback = version, flags = {'no-writes'}}
