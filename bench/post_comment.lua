-- wrk script: form-encoded comment posts, each with unique text and author (no duplicates,
-- no per-author rate limit hits). Usage: wrk -s bench/post_comment.lua URL -- <run-nonce>
local threads = {}
-- "id" is a global: setup() sets it in each thread with thread:set (a local would shadow it).
local counter = 0
local nonce = "0"

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  nonce = args[1] or "0"
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  wrk.headers["Accept"] = "application/json"
end

function request()
  counter = counter + 1
  local body = string.format(
    "post_id=bench-%d&author=Reader+%d+%d&email=reader.%s.%d.%d%%40example.com" ..
    "&comment=Comment+%d+from+thread+%d%%3A+the+council+vote+was+closer+than+the+article+says%%2C" ..
    "+and+the+bus+timetable+change+deserves+a+follow-up+piece.",
    counter % 64, id, counter, nonce, id, counter, counter, id)
  return wrk.format(nil, nil, nil, body)
end
