"""What every benchmark in bench/ shares (run as `python bench/SCRIPT.py`, a script imports it).

* `harness.cluster`: the private PostgreSQL (durable or fast), the benchmark database migrated,
  its roles and their URLs;
* `harness.seed`: organisations' contacts, conversations and messages, written as the
  application writes them, and the legacy schema of tests/support/legacy.py;
* `harness.servers`: `vechat-rls serve` processes started and stopped, and their users' tokens;
* `harness.meters`: CPU by process group, RSS, percentiles, closed-loop rates, the event loop;
* `harness.profiling`: py-spy of server processes, and where their time went;
* `harness.report`: header lines, tables, and ratios to a baseline measured in the same run.
"""
