//! The one Lua script an exchange runs per endpoint: atomic on the server, so
//! replicas never race each other for the last slots of a window, and timed by
//! Redis' clock, so replicas' clocks need not agree.
//!
//! Keys (one hash tag, the key's fingerprint, so they share a Cluster slot):
//! `:r` and `:t` hash one-second buckets of requests and tokens (the last 60 count),
//! `:c` the cooldown's end (ms), `:x` a refusal, `:q` the last quota report.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use crate::pool::{ExchangeIn, ExchangeOut};
use crate::provider::ratelimit::RateLimitReport;
use crate::provider::refusal::KeyRefusal;

/// How long a refusal stays shared without a replica saying it again.
const REFUSAL_TTL_SECS: u64 = 600;

static EXCHANGE: LazyLock<Script> = LazyLock::new(|| Script::new(LUA));

const LUA: &str = r#"
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now_ms = sec * 1000 + math.floor(tonumber(t[2]) / 1000)
local function window(key)
  local used, oldest = 0, nil
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    local s, n = tonumber(all[i]), tonumber(all[i + 1])
    if s <= sec - 60 then
      redis.call('HDEL', key, all[i])
    else
      used = used + n
      if n > 0 and (oldest == nil or s < oldest) then oldest = s end
    end
  end
  return used, oldest
end
local function add(key, n)
  if n ~= 0 then
    redis.call('HINCRBY', key, sec, n)
    redis.call('EXPIRE', key, 120)
  end
end
local rpm, want, release, release_sec = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
if release > 0 then
  local cur = tonumber(redis.call('HGET', KEYS[1], release_sec) or '0')
  if cur > 0 then redis.call('HINCRBY', KEYS[1], release_sec, -math.min(cur, release)) end
end
add(KEYS[1], tonumber(ARGV[5]))
local used, oldest = window(KEYS[1])
local granted, free_ms = 0, -1
if rpm > 0 then
  granted = math.max(0, math.min(want, rpm - used))
  add(KEYS[1], granted)
  used = used + granted
  if used >= rpm then free_ms = oldest and ((oldest + 60) * 1000 - now_ms) or 1000 end
end
add(KEYS[2], tonumber(ARGV[6]))
local tpm = tonumber(ARGV[18])
local used_t, oldest_t = window(KEYS[2])
local tfree_ms = -1
if tpm > 0 and used_t >= tpm then tfree_ms = oldest_t and ((oldest_t + 60) * 1000 - now_ms) or 1000 end
local cd = tonumber(ARGV[7])
if cd > 0 then
  local cur = tonumber(redis.call('GET', KEYS[3]) or '0')
  if now_ms + cd > cur then redis.call('SET', KEYS[3], now_ms + cd, 'PX', cd) end
end
local cool = tonumber(redis.call('GET', KEYS[3]) or '0') - now_ms
if cool < 0 then cool = 0 end
if tonumber(ARGV[8]) > 0 then
  redis.call('SET', KEYS[4], ARGV[8], 'EX', ARGV[19])
elseif ARGV[9] == '1' then
  redis.call('DEL', KEYS[4])
end
local refused = tonumber(redis.call('GET', KEYS[4]) or '0')
if ARGV[11] == '1' then
  local function abs(v) v = tonumber(v) if v < 0 then return -1 end return now_ms + v end
  redis.call('HSET', KEYS[5], 'w', ARGV[10], 'at', now_ms, 'rr', ARGV[12], 'rt', ARGV[13],
    'lr', ARGV[14], 'lt', ARGV[15], 'xr', abs(ARGV[16]), 'xt', abs(ARGV[17]))
  redis.call('PEXPIRE', KEYS[5], 120000)
end
local q = {0, 0, -1, -1, -1, -1, -1, -1}
local w = redis.call('HGET', KEYS[5], 'w')
if w and w ~= ARGV[10] then
  local f = redis.call('HMGET', KEYS[5], 'at', 'rr', 'rt', 'lr', 'lt', 'xr', 'xt')
  local function rel(v) v = tonumber(v) if v < 0 then return -1 end return math.max(0, v - now_ms) end
  q = {1, tonumber(f[1]), tonumber(f[2]), tonumber(f[3]), tonumber(f[4]), tonumber(f[5]), rel(f[6]), rel(f[7])}
end
return {granted, sec, used, free_ms, used_t, tfree_ms, cool, refused,
  q[1], q[2], q[3], q[4], q[5], q[6], q[7], q[8]}
"#;

/// The Redis keys of one endpoint, sharing the hash tag `{fingerprint}`.
pub fn keys(prefix: &str, fingerprint: &str, id: &crate::pool::EndpointId) -> [String; 5] {
    let base = format!("{prefix}:{{{fingerprint}}}:{}\u{1f}{}\u{1f}{}", id.alias, id.deployment, id.key_name);
    ["r", "t", "c", "x", "q"].map(|suffix| format!("{base}:{suffix}"))
}

fn ms(d: Option<Duration>) -> i64 {
    d.map_or(-1, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn opt(v: Option<u64>) -> i64 {
    v.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX))
}

fn refusal_code(r: Option<KeyRefusal>) -> i64 {
    match r {
        None => 0,
        Some(KeyRefusal::Invalid) => 1,
        Some(KeyRefusal::OutOfCredits) => 2,
    }
}

/// Runs the exchange for one endpoint.
pub async fn exchange<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    keys: &[String; 5],
    out: &ExchangeOut,
    writer: &str,
) -> redis::RedisResult<ExchangeIn> {
    let quota = out.quota.as_ref();
    let q = |f: fn(&RateLimitReport) -> Option<u64>| opt(quota.and_then(f));
    let qd = |f: fn(&RateLimitReport) -> Option<Duration>| ms(quota.and_then(f));
    let mut call = EXCHANGE.prepare_invoke();
    for key in keys {
        call.key(key);
    }
    call.arg(out.rpm.unwrap_or(0))
        .arg(out.want)
        .arg(out.release)
        .arg(out.release_second)
        .arg(out.overdraft)
        .arg(out.tokens)
        .arg(ms(out.cooldown).max(0))
        .arg(refusal_code(out.refused))
        .arg(u8::from(out.refusal_cleared))
        .arg(writer)
        .arg(u8::from(quota.is_some()))
        .arg(q(|r| r.remaining_requests))
        .arg(q(|r| r.remaining_tokens))
        .arg(q(|r| r.limit_requests))
        .arg(q(|r| r.limit_tokens))
        .arg(qd(|r| r.reset_requests))
        .arg(qd(|r| r.reset_tokens))
        .arg(out.tpm.unwrap_or(0))
        .arg(REFUSAL_TTL_SECS);
    let v: Vec<i64> = call.invoke_async(conn).await?;
    Ok(reply(&v))
}

fn reply(v: &[i64]) -> ExchangeIn {
    let at = |i: usize| v.get(i).copied().unwrap_or(-1);
    let count = |i: usize| u64::try_from(at(i)).unwrap_or(0);
    let known = |i: usize| u64::try_from(at(i)).ok();
    let dur = |i: usize| known(i).map(Duration::from_millis);
    let quota = (at(8) == 1).then(|| RateLimitReport {
        remaining_requests: known(10),
        remaining_tokens: known(11),
        limit_requests: known(12),
        limit_tokens: known(13),
        reset_requests: dur(14),
        reset_tokens: dur(15),
        ..RateLimitReport::default()
    });
    ExchangeIn {
        granted: count(0),
        grant_second: count(1),
        requests_used: count(2),
        requests_free_in: dur(3),
        tokens_used: count(4),
        tokens_free_in: dur(5),
        cooldown: dur(6).filter(|d| !d.is_zero()),
        refused: match at(7) {
            1 => Some(KeyRefusal::Invalid),
            2 => Some(KeyRefusal::OutOfCredits),
            _ => None,
        },
        quota,
        quota_at: at(9),
    }
}
