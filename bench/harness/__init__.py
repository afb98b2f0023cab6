"""The harness every benchmark suite shares: a real S3 server, a proxy that counts requests and
imposes a round trip and a bandwidth cap, seeded databases cached on disk, replica shapes, and
the peers (ltxvfs, litestream-vfs, sqlite-s3vfs, `litestream restore` + sqlite) run cold in new
processes.

- server.py: the SeaweedFS S3 server (tests/s3server.py) for a benchmark session.
- network.py: round trip and bandwidth of the imitated region (BENCH_RTT_MS, BENCH_BANDWIDTH_MBPS).
- databases.py: seeded databases of about 50 and 500 MB, built once and cached.
- replicas.py: replica shapes: one snapshot; a snapshot plus 1,000 level-0 files; a multi-level
  replica written by the real `litestream replicate`; sqlite-s3vfs's block layout.
- peers.py: the child process that opens a database with one peer and runs one scenario.
- runner.py: spawns children, times them, and reads the proxy's log for their requests.
- report.py: the markdown table and PNG plot in bench/results/.
"""
