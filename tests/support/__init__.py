"""What the test suite shares: servers and databases (`postgres`, `fixtures`), seeding under tenant
contexts (`seed`), the HTTP and WebSocket callers (`api`, `chat`, `realtime`), the registry fleet
(`fleet`), catalog snapshots (`catalog`), the legacy VeChat schema (`legacy`), and the benchmark
scripts' runner (`bench`). Test files are grouped by layer beside it: unit/, db/, api/, realtime/,
bench/, browser/."""
