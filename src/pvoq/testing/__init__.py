"""Support for the tests, the demo and the benchmarks: nothing an appliance runs.

- `localdeploy`: a whole deployment on localhost (manager, gateway, sink as
  child processes, on free ports, in one directory).
- `demo`: `pvoq demo`, one message's journey through such a deployment.
- `pgserver`: a throwaway PostgreSQL server in a temporary directory.
- `clamd`: a private clamd with its own socket and an EICAR-only signature
  database.

The runtime package never imports `pvoq.testing`; only the tests, the
benchmarks and the `pvoq demo` command (imported lazily, when it runs) do.
"""
