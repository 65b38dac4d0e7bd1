# Sourced by scripts/test: the tests need Redis at 127.0.0.1:6379 and PostgreSQL at 127.0.0.1:5432
# (user postgres, trust auth). Starts them where they are installed but not running; else says what is missing.
redis_up() { python3 - <<'PY' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", 6379), timeout=1); s.sendall(b"PING\r\n")
sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
PY
}
pg_up() { command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432; }

if ! redis_up; then
  if command -v redis-server >/dev/null 2>&1; then
    echo "starting redis-server on 127.0.0.1:6379" >&2
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
    for _ in $(seq 50); do redis_up && break; sleep 0.1; done
  fi
  redis_up || { echo "error: Redis is not answering at 127.0.0.1:6379 and redis-server is not installed" >&2; exit 1; }
fi
if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    version=$(ls /etc/postgresql | sort -V | tail -1)
    echo "starting PostgreSQL $version on 127.0.0.1:5432" >&2
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 100); do pg_up && break; sleep 0.1; done
  fi
  pg_up || { echo "error: PostgreSQL is not answering at 127.0.0.1:5432 (user postgres, trust auth) and could not be started" >&2; exit 1; }
fi
