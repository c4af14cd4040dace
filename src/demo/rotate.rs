//! The demo's key rotation: the secrets directory is laid out and updated the way
//! kubelet updates a mounted Secret, and one key gets a new value mid-run. The mock
//! provider accepts the new value before the swap and revokes the old one once the
//! new snapshot serves and the requests that still held the old one have finished,
//! so a request sent with a revoked key would show up as an error in the table.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::mock::{KeyLimit, MockProvider};
use crate::runtime::Running;

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

/// Rotates the key, waits for keyrelay to serve the new value, lets requests on the
/// old snapshot finish, revokes the old value at the mock, and reports each step in
/// `events` for the table.
pub async fn rotate(
    rotation: Rotation,
    running: &Running,
    mock: &MockProvider,
    started: Instant,
    events: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let say = |line: String| events.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    mock.add_key(rotation.new_value, rotation.limit);
    let old_snapshot = Arc::downgrade(&running.store.load_full());
    let mut generations = running.generations();
    let before = *generations.borrow_and_update();
    let payload: Vec<(&str, &str)> = rotation
        .payload
        .iter()
        .map(|(name, value)| if *name == rotation.key { (*name, rotation.new_value) } else { (*name, *value) })
        .collect();
    let at = started.elapsed().as_secs_f64();
    write_volume(&rotation.secrets_dir, 2, &payload)?;
    let swapped = tokio::time::timeout(Duration::from_secs(15), generations.wait_for(|g| *g > before)).await;
    let Ok(Ok(generation)) = swapped.map(|r| r.map(|g| *g)) else {
        say(format!("rotation of {} at {at:.1}s did not apply (see /readyz)", rotation.key));
        return Ok(());
    };
    let took = started.elapsed().as_secs_f64() - at;
    say(format!(
        "rotated {} at {at:.1}s; generation {generation} serving {:.0} ms later \
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
