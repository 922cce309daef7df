"""Health of repositories and a running archiver: the records `pitr status` reads (`records`), the
judgement (`health`), and the archiver's observers (`recorder`, `metrics`, `heartbeat`, `events`,
`watch`). `metrics` and `heartbeat` import prometheus_client and httpx: import them only when used."""
