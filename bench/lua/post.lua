-- POSTs the same body on every request and reports the run as JSON (see report.lua).
-- The body file, its content type and any further headers ("Name: value") come from the script's arguments, so
-- one script serves the JSON image, the JSON batch, the multipart PNG upload and the binary tensors alike:
--   wrk -t2 -c64 -d10s -s bench/lua/post.lua http://127.0.0.1:8000/predict -- body.json application/json
--   wrk ... /v2/models/m/infer -- body.bin application/octet-stream "Inference-Header-Content-Length: 120"

local script_folder = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(script_folder .. "report.lua")

-- wrk calls init() in every thread before it builds the request, so the body set here is the one sent.
function init(args)
  local body_file = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.body = body_file:read("*a")
  body_file:close()
  wrk.headers["Content-Type"] = args[2]
  for index = 3, #args do
    local name, value = args[index]:match("^([^:]+):%s*(.*)$")
    wrk.headers[name] = value
  end
end
