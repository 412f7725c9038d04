//! Windowed item exchange (`kith_proto::files::items`) on kith-sim's network: a fetcher
//! running the multi-source [`Scheduler`] and holders running the [`ItemServer`], their
//! requests and items as envelopes on simulated streams with latency, bandwidth, partitions
//! (short ones as a stream's loss: a lost segment stalls it for a retransmission timeout;
//! long ones break the connection), holders that die, and a holder that lies. The fetcher
//! hashes every item before it counts, as a node does.

#[path = "swarm/mod.rs"]
mod swarm;

use kith_proto::files::items::{DropReason, SchedEvent};
use kith_sim::Addr;
use std::time::Duration;
use swarm::{ms, Fault, Swarm, ITEM, MB};

fn mb_per_s(items: u32, secs: f64) -> f64 {
    items as f64 * ITEM as f64 / secs / MB as f64
}

#[test]
fn a_window_fills_a_fifty_millisecond_path() {
    // 40 MB across 25 ms each way at 50 MB/s: the bandwidth-delay product is 2.5 MB.
    let mut swarm = Swarm::new(1, 160, &[(ms(25), 50 * MB, Fault::None)], 16 * MB);
    let secs = swarm.run(Duration::from_secs(30));
    let rate = mb_per_s(160, secs);
    assert!(rate > 0.8 * 50.0, "{rate:.1} MB/s of 50");
    // A window of one item takes turns: one round trip per item at least.
    let mut turns = Swarm::new(1, 40, &[(ms(25), 50 * MB, Fault::None)], ITEM as u64);
    let slow = mb_per_s(40, turns.run(Duration::from_secs(30)));
    assert!(
        slow < 0.5 * rate,
        "one item at a time: {slow:.1} MB/s, windowed {rate:.1}"
    );
}

#[test]
fn three_uplinks_add_up_and_the_faster_source_carries_more() {
    let holders = [
        (ms(25), 40 * MB, Fault::None),
        (ms(25), 40 * MB, Fault::None),
        (ms(25), 40 * MB, Fault::None),
    ];
    let mut swarm = Swarm::new(2, 480, &holders, 24 * MB);
    let rate = mb_per_s(480, swarm.run(Duration::from_secs(30)));
    assert!(
        rate >= 2.7 * 40.0,
        "{rate:.1} MB/s from three 40 MB/s uplinks"
    );

    let holders = [
        (ms(25), 60 * MB, Fault::None),
        (ms(60), 10 * MB, Fault::None),
    ];
    let mut swarm = Swarm::new(3, 200, &holders, 24 * MB);
    swarm.run(Duration::from_secs(30));
    let (fast, slow) = (swarm.holders[0], swarm.holders[1]);
    let f = swarm.fetcher();
    assert!(
        f.items_from(fast) > 3 * f.items_from(slow),
        "fast {} slow {}",
        f.items_from(fast),
        f.items_from(slow)
    );
}

#[test]
fn loss_stalls_streams_but_the_fetch_completes() {
    let holders = [
        (ms(25), 40 * MB, Fault::None),
        (ms(25), 40 * MB, Fault::None),
    ];
    let mut clean = Swarm::new(4, 240, &holders, 24 * MB);
    let clean_secs = clean.run(Duration::from_secs(30));
    let mut lossy = Swarm::new(4, 240, &holders, 24 * MB);
    // Every 50 ms each link loses a segment with probability 0.2: a 200 ms stall (a
    // retransmission timeout), seeded so every run is the same.
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut stalled: Vec<(Addr, Duration)> = Vec::new();
    let mut stalls = 0;
    lossy.run_sliced(Duration::from_secs(60), ms(50), |s| {
        let now = s.sim.elapsed();
        let fetcher = s.fetcher;
        stalled.retain(|(h, until)| {
            if *until <= now {
                s.sim.heal(fetcher, *h);
                false
            } else {
                true
            }
        });
        for h in s.holders.clone() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            if rng.is_multiple_of(5) && !stalled.iter().any(|(x, _)| *x == h) {
                s.sim.partition(fetcher, h);
                stalled.push((h, now + ms(200)));
                stalls += 1;
            }
        }
    });
    assert!(lossy.finished(), "{:?}", lossy.fetcher().events.first());
    let f = lossy.fetcher();
    let lossy_secs = (f.finished_at.unwrap() - f.started_at.unwrap()).as_secs_f64();
    assert!(stalls > 5, "the loss happened: {stalls}");
    assert!(lossy_secs > clean_secs, "{lossy_secs} vs {clean_secs}");
    assert!(
        lossy_secs < 4.0 * clean_secs,
        "loss costs stalls, not the fetch: {lossy_secs:.2}s vs {clean_secs:.2}s"
    );
}

#[test]
fn a_short_partition_delays_a_source_and_a_long_one_has_its_work_moved() {
    let holders = [
        (ms(25), 20 * MB, Fault::None),
        (ms(25), 20 * MB, Fault::None),
    ];
    let mut swarm = Swarm::new(5, 240, &holders, 24 * MB);
    let (a, b) = (swarm.holders[0], swarm.holders[1]);
    let fetcher = swarm.fetcher;
    // A: cut for one second, then back (shorter than the 5 s after which streams break).
    swarm.sim.run_until(ms(300));
    swarm.sim.partition(fetcher, a);
    swarm.sim.run_until(ms(1_300));
    swarm.sim.heal(fetcher, a);
    // B: cut for good; its connection times out and the fetch goes on from A.
    swarm.sim.run_until(ms(1_500));
    swarm.sim.partition(fetcher, b);
    swarm.run(Duration::from_secs(60));
    let f = swarm.fetcher();
    assert_eq!(f.done.len(), 240);
    assert_eq!(f.dropped(a), None, "{:?}", f.events);
    // B stalled and its requests went to A: the fetch did not wait the 5 s until B's stream
    // broke.
    assert!(f.events.contains(&SchedEvent::Stalled(b)), "{:?}", f.events);
    assert!(
        swarm.sim.elapsed() < ms(1_500 + 5_000),
        "{:?}",
        swarm.sim.elapsed()
    );
    assert!(f.items_from(a) > f.items_from(b));
}

#[test]
fn a_lying_holder_is_dropped_and_every_item_still_verifies() {
    let holders = [
        (ms(10), 40 * MB, Fault::Liar),
        (ms(25), 20 * MB, Fault::None),
    ];
    let mut swarm = Swarm::new(6, 120, &holders, 16 * MB);
    swarm.run(Duration::from_secs(30));
    let (liar, honest) = (swarm.holders[0], swarm.holders[1]);
    let f = swarm.fetcher();
    assert_eq!(f.dropped(liar), Some(DropReason::WrongItem));
    assert_eq!(f.wrong, 1, "one wrong item and it is out");
    assert_eq!(f.done.len(), 120);
    assert_eq!(f.items_from(honest) as usize, 120);
    assert!(f.peak_window <= 16 * MB);
}

#[test]
fn a_holder_that_dies_mid_transfer_is_replaced() {
    let holders = [
        (ms(25), 30 * MB, Fault::None),
        (ms(25), 30 * MB, Fault::None),
    ];
    let mut swarm = Swarm::new(7, 240, &holders, 24 * MB);
    swarm.sim.run_until(ms(600));
    let dead = swarm.holders[0];
    swarm.sim.reset_node(dead);
    swarm.run(Duration::from_secs(30));
    let f = swarm.fetcher();
    assert_eq!(f.done.len(), 240);
    assert_eq!(f.dropped(dead), Some(DropReason::Gone));
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let run = || {
        let holders = [
            (ms(25), 40 * MB, Fault::None),
            (ms(40), 20 * MB, Fault::Liar),
        ];
        let mut swarm = Swarm::new(8, 80, &holders, 16 * MB);
        swarm.run(Duration::from_secs(30));
        (swarm.sim.trace_hash(), swarm.sim.elapsed())
    };
    assert_eq!(run(), run());
}
