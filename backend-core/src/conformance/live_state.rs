//! The [`LiveState`] suite.

use crate::ids::AgentId;
use crate::live::LiveState;
use chrono::{Duration, Utc};

/// Runs every check.
pub async fn run(live: &dyn LiveState) {
    last_seen(live).await;
    stats_expire(live).await;
    rate_limit_window_rolls(live).await;
}

/// An agent's last-seen time is the latest touch.
pub async fn last_seen(live: &dyn LiveState) {
    let agent = AgentId::from(format!("conformance-{}", uuid::Uuid::new_v4()));
    assert_eq!(live.agent_last_seen(&agent).await.unwrap(), None);
    let t = Utc::now();
    live.touch_agent(&agent, t).await.unwrap();
    let seen = live.agent_last_seen(&agent).await.unwrap().expect("seen");
    assert!((seen - t).num_milliseconds().abs() <= 1, "last seen kept at millisecond precision");
}

/// A stat is readable until its time to live runs out.
pub async fn stats_expire(live: &dyn LiveState) {
    let key = format!("kernel.{}", uuid::Uuid::new_v4());
    let now = Utc::now();
    live.set_stat(&key, serde_json::json!({"cpu": 1}), Duration::seconds(30), now).await.unwrap();
    assert_eq!(live.stat(&key, now).await.unwrap(), Some(serde_json::json!({"cpu": 1})));
    assert_eq!(live.stat(&key, now + Duration::seconds(31)).await.unwrap(), None);
}

/// Hits are counted in a rolling window per access key.
pub async fn rate_limit_window_rolls(live: &dyn LiveState) {
    let ak = format!("AK{}", uuid::Uuid::new_v4().simple());
    let window = Duration::minutes(15);
    let t0 = Utc::now();
    assert_eq!(live.hit_rate_limit(&ak, t0, window).await.unwrap(), 1);
    assert_eq!(live.hit_rate_limit(&ak, t0 + Duration::minutes(1), window).await.unwrap(), 2);
    assert_eq!(live.hit_rate_limit(&format!("{ak}x"), t0, window).await.unwrap(), 1, "keys are separate");
    // The first hit has left the window; the second has not.
    assert_eq!(live.hit_rate_limit(&ak, t0 + Duration::minutes(15) + Duration::seconds(1), window).await.unwrap(), 2);
}
