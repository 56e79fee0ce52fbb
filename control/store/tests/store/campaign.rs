//! Leader election on etcd: who leads, how fast another takes over, when leadership is lost.
//! (The module's name sorts first on purpose: libtest starts tests in name order, and these
//! mostly sleep, so they overlap with everything else instead of trailing at the end.)

use std::time::{Duration, Instant};

use skiff_store::{testing::EtcdServer, EtcdStore, Leadership, Store};
use tokio::task::JoinSet;

fn connect(server: &EtcdServer, prefix: &str) -> EtcdStore {
    EtcdStore::connect(&[server.endpoint()], prefix).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_three_candidates_leads_and_another_takes_over_when_it_dies() {
    let Some(server) = EtcdServer::start_or_skip("election") else {
        return;
    };
    let mut candidates: JoinSet<(String, Leadership)> = JoinSet::new();
    for name in ["host-a:1", "host-b:2", "host-c:3"] {
        // Separate stores, as separate control-plane processes would have.
        let store = connect(&server, "/skiff");
        candidates.spawn(async move {
            let leadership = store.campaign("control", name).await.unwrap();
            (name.to_string(), leadership)
        });
    }

    let (first, leadership) = tokio::time::timeout(Duration::from_secs(5), candidates.join_next())
        .await
        .expect("someone leads within 5 s")
        .unwrap()
        .unwrap();
    assert!(leadership.is_leader());
    // Nobody else leads while the first one renews its lease (well past the 3 s TTL).
    let second = tokio::time::timeout(Duration::from_millis(3500), candidates.join_next()).await;
    assert!(second.is_err(), "two leaders at once");
    assert!(leadership.is_leader(), "{first} stayed leader by renewing");

    // A hard stop: renewals end, the lease is not revoked, as after kill -9.
    let died = Instant::now();
    drop(leadership);
    let (next, successor) = tokio::time::timeout(Duration::from_secs(6), candidates.join_next())
        .await
        .expect("another candidate leads within 6 s of the leader dying")
        .unwrap()
        .unwrap();
    assert_ne!(next, first);
    assert!(successor.is_leader());
    eprintln!("{next} took over from {first} after {:?}", died.elapsed());

    // Resigning hands over at once, to the last candidate.
    let handed = Instant::now();
    let (resigned, winner) = tokio::join!(
        successor.resign(),
        tokio::time::timeout(Duration::from_secs(2), candidates.join_next())
    );
    resigned.unwrap();
    let (last, _) = winner
        .expect("the last candidate leads soon after a resignation")
        .unwrap()
        .unwrap();
    assert!(last != first && last != next);
    eprintln!("{last} took over from {next} after {:?}", handed.elapsed());
}

#[tokio::test]
async fn leadership_is_lost_when_the_key_is_taken_away() {
    let Some(server) = EtcdServer::start_or_skip("leadership_lost") else {
        return;
    };
    let store = connect(&server, "/skiff");
    let mut leadership = store.campaign("control", "me:1").await.unwrap();
    assert!(leadership.is_leader());

    // An operator deletes the election key (etcdctl del /skiff/elections/control).
    let answer = reqwest::Client::new()
        .post(format!("{}/v3/kv/deleterange", server.endpoint()))
        .json(&serde_json::json!({ "key": "L3NraWZmL2VsZWN0aW9ucy9jb250cm9s" }))
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success());
    tokio::time::timeout(Duration::from_secs(3), leadership.lost())
        .await
        .expect("lost() resolves once the key is gone");
    assert!(!leadership.is_leader());
}

#[tokio::test]
async fn leadership_is_lost_when_etcd_goes_away() {
    let Some(server) = EtcdServer::start_or_skip("leadership_lost_etcd") else {
        return;
    };
    let store = connect(&server, "/skiff");
    let mut leadership = store.campaign("control", "me:1").await.unwrap();
    drop(server);
    tokio::time::timeout(Duration::from_secs(4), leadership.lost())
        .await
        .expect("lost() resolves when renewals fail");
    assert!(!leadership.is_leader());
}
