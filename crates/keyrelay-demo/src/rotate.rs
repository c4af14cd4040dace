//! The demo's key rotation: the secrets directory is laid out and updated the way
//! kubelet updates a mounted Secret, and one key gets a new value mid-run: first one
//! with a typo, which keyrelay's pre-flight probe finds refused, so the old value
//! serves on; then the good one. The mock accepts the good value before the swap and
//! revokes the old one once the new snapshot serves and the requests that still held
//! the old one have finished, so a request sent with a revoked or refused key would
//! show up as an error in the table.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keyrelay::pool::Rotation as PoolRotation;
use keyrelay::runtime::Running;
use keyrelay_mock::{KeyLimit, MockProvider};

/// Replaces the whole content of `dir` in kubelet's AtomicWriter order: a new
/// `..<n>` directory, `..data_tmp` pointing at it renamed over `..data`, visible
/// `NAME -> ..data/NAME` links, then the previous directory removed.
pub fn write_volume(dir: &Path, generation: u32, payload: &[(&str, &str)]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let data = dir.join("..data");
    let old = std::fs::read_link(&data).ok();
    let ts_name = format!("..demo_{generation}");
    let ts_dir = dir.join(&ts_name);
    std::fs::create_dir(&ts_dir)?;
    for (name, value) in payload {
        std::fs::write(ts_dir.join(name), value)?;
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(&ts_name, &tmp)?;
    std::fs::rename(&tmp, &data)?;
    for (name, _) in payload {
        let visible = dir.join(name);
        if std::fs::symlink_metadata(&visible).is_err() {
            symlink(Path::new("..data").join(name), &visible)?;
        }
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old))?;
    }
    Ok(())
}

/// One key to rotate and where.
pub struct Rotation {
    pub secrets_dir: std::path::PathBuf,
    /// Every key of the volume; the one named `key` gets `new_value`.
    pub payload: Vec<(&'static str, &'static str)>,
    pub key: &'static str,
    pub old_value: &'static str,
    pub new_value: &'static str,
    pub limit: KeyLimit,
}

/// A value for the rotated key that the provider does not know (a typo): its
/// rotation must be rejected and the old value serve on.
pub const TYPO_SUFFIX: &str = "-typo";

/// Rotates the key twice: first to a value with a typo, which keyrelay's pre-flight
/// probe finds refused (the old value keeps serving, no request fails), then to the
/// good value, which serves once its probe passes. Then lets requests on the old
/// snapshot finish, revokes the old value at the mock, and reports each step in
/// `events` for the table.
pub async fn rotate(
    rotation: Rotation,
    running: &Running,
    mock: &MockProvider,
    started: Instant,
    events: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let say = |line: String| events.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    let with = |value: &str| -> Vec<(String, String)> {
        let key = rotation.key;
        let pick = |name: &str, v: &str| if name == key { value.to_owned() } else { v.to_owned() };
        rotation.payload.iter().map(|(name, v)| ((*name).to_owned(), pick(name, v))).collect()
    };
    let write = |generation: u32, payload: Vec<(String, String)>| {
        let refs: Vec<(&str, &str)> = payload.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        write_volume(&rotation.secrets_dir, generation, &refs)
    };

    let typo = format!("{}{TYPO_SUFFIX}", rotation.new_value);
    let at = started.elapsed().as_secs_f64();
    let before = running.store.load().generation;
    write(2, with(&typo))?;
    let rejected = serving(running, rotation.key, before, |r| matches!(r, Some(PoolRotation::Rejected { .. }))).await;
    match rejected {
        Some(generation) => say(format!(
            "rotated {} to a value the provider refuses at {at:.1}s: rotation rejected (generation {generation}), \
             the old value keeps serving",
            rotation.key
        )),
        None => say(format!("rotation of {} to a refused value at {at:.1}s was not rejected in time", rotation.key)),
    }

    mock.add_key(rotation.new_value, rotation.limit);
    let old_snapshot = Arc::downgrade(&running.store.load_full());
    let at = started.elapsed().as_secs_f64();
    let before = running.store.load().generation;
    write(3, with(rotation.new_value))?;
    let switched = serving(running, rotation.key, before, |r| r.is_none()).await;
    let Some(generation) = switched else {
        say(format!("rotation of {} at {at:.1}s did not apply (see /readyz)", rotation.key));
        return Ok(());
    };
    let took = started.elapsed().as_secs_f64() - at;
    say(format!(
        "rotated {} at {at:.1}s; probe accepted, generation {generation} serving {:.0} ms later \
         (a new value is a new key: its counters start over)",
        rotation.key,
        took * 1000.0
    ));
    // The old snapshot lives while a request that loaded it is still running.
    let drain_deadline = Instant::now() + Duration::from_secs(10);
    while old_snapshot.strong_count() > 0 && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    mock.remove_key(rotation.old_value);
    say(format!(
        "old value of {} revoked at the provider at {:.1}s, after in-flight requests drained",
        rotation.key,
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Waits (up to 15 s) for a serving snapshot newer than generation `after` whose
/// endpoints of `key` all have a rotation state `want` accepts; its generation.
async fn serving(running: &Running, key: &str, after: u64, want: impl Fn(Option<PoolRotation>) -> bool) -> Option<u64> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let snapshot = running.store.load_full();
        let matches = {
            let mut of_key = snapshot.routes().flat_map(|r| &r.endpoints).filter(|e| e.key_name() == key).peekable();
            snapshot.generation > after && of_key.peek().is_some() && of_key.all(|e| want(e.rotation))
        };
        if matches {
            return Some(snapshot.generation);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}
