//! A real `redis-server` for one test: a free port, a temp dir, no persistence;
//! killed on drop. `scripts/test` installs redis-server when it is missing.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    password: Option<String>,
    dir: tempfile::TempDir,
}

impl Redis {
    pub async fn start() -> Redis {
        Self::start_with(None).await
    }

    pub async fn start_with_password(password: &str) -> Redis {
        Self::start_with(Some(password.to_owned())).await
    }

    async fn start_with(password: Option<String>) -> Redis {
        let mut dir = tempfile::tempdir().expect("temp dir");
        // A port the OS just handed out; another process may take it before
        // redis-server binds it, so a start that does not answer tries another.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
            let mut redis = Redis { child: None, port, password: password.clone(), dir };
            if redis.launch().await {
                return redis;
            }
            dir = redis.take_dir();
        }
        panic!("redis-server did not start (is it installed? scripts/test installs it)");
    }

    fn take_dir(mut self) -> tempfile::TempDir {
        self.stop();
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"))
    }

    /// Starts redis-server on `self.port` and waits (with a deadline) for PING.
    async fn launch(&mut self) -> bool {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        let Ok(child) = command.spawn() else { return false };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_some()) {
                self.child = None;
                return false;
            }
            if self.answers().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stop();
        false
    }

    /// PING answered (`-NOAUTH` counts: the server is up, it wants a password).
    async fn answers(&self) -> bool {
        let Ok(Ok(mut stream)) =
            tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(("127.0.0.1", self.port)))
                .await
        else {
            return false;
        };
        if stream.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 64];
        matches!(tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await,
            Ok(Ok(n)) if n > 0 && (buf.starts_with(b"+PONG") || buf.starts_with(b"-NOAUTH")))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (as a crash or a lost node would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (empty: nothing was saved).
    pub async fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.launch().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not restart on port {}", self.port);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
