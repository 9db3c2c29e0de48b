-- POSTs the same body on every request and reports the run as JSON (see report.lua).
-- The body file and its content type come from the script's arguments, so one script serves the JSON image,
-- the JSON batch and the multipart PNG upload alike:
--   wrk -t2 -c64 -d10s -s bench/lua/post.lua http://127.0.0.1:8000/predict -- body.json application/json

local script_folder = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(script_folder .. "report.lua")

-- wrk calls init() in every thread before it builds the request, so the body set here is the one sent.
function init(args)
  local body_file = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.body = body_file:read("*a")
  body_file:close()
  wrk.headers["Content-Type"] = args[2]
end
