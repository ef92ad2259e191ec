"""HTTP plumbing shared by every feature: error answers (problems.py), request
bodies (body.py), typed reading of fields, parameters and headers (inputs.py,
params.py), credentials on requests (auth.py) and what the HTTP layer logs
(logs.py). No feature logic lives here."""
