//! The distance-vector routing table.
//!
//! Each identified neighbour is a route of 1 hop to itself. Each ROUTING entry `{node_id, ttl}`
//! from neighbour N says N is `ttl` hops from that node, so we are `ttl + 1` via N. The table
//! keeps what every neighbour last said (so that losing the best next hop falls back at once to
//! the next best, instead of waiting for a refresh) and the best route per destination: fewest
//! hops, ties kept on the current next hop for stability, then the lowest neighbour id.
//!
//! The reference replaces an entry only with a strictly shorter one, which never forgets a
//! route that got longer; here every change from a neighbour replaces what it said before, as
//! in RIP. Loops are kept short by **poisoned reverse**: what we advertise to the neighbour we
//! route through is `infinity`. A destination at `infinity` hops or more is unreachable, which
//! also ends any count to infinity after at most `infinity` exchanges. Routes through a
//! neighbour go when the neighbour goes (or falls silent: the router drops it).
//!
//! Changes are collected in a dirty set; the router sends them as one batched ROUTING to every
//! neighbour, and the whole table on each periodic refresh.
//!
//! **Unauthenticated routers are believed last.** A ptpchat router on the chat port whose id
//! no key derives is an *untrusted* neighbour: it may announce at most `max_untrusted`
//! destinations, and a route through it ranks below any unmarked route through an
//! authenticated neighbour (a kith node, or a router that proved its key), however short its
//! claim: a router that announces a node it cannot reach does not black-hole the traffic of
//! honest nodes that have a path of their own. It still carries what only it can reach.
//!
//! **A route claim is only a claim.** A neighbour that says it is 0 hops from another node
//! (it *is* that node) is refused: only the link's own key says who a neighbour is. A direct
//! neighbour whose identity was proven is always the route to itself. Beyond that, what the
//! router learns end to end marks routes ([`Mark`]): a next hop through which the recipient
//! signed a receipt is *confirmed*, and preferred to any unproven claim however short, so
//! one neighbour's claim cannot take traffic off a working path; a next hop through which a
//! copy went unacknowledged end to end is *demoted* below every other candidate, so the next
//! attempt takes another path. Marks expire (`route_mark_for`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use kith_crypto::NodeId;

use super::NeighbourId;

/// One best route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The neighbour to send through.
    pub next_hop: NeighbourId,
    /// Hops to the destination through it.
    pub hops: u8,
}

/// What end-to-end receipts taught about a next hop for a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    /// The recipient acknowledged a copy sent this way.
    Confirmed,
    /// A copy sent this way was not acknowledged end to end.
    Demoted,
}

#[derive(Debug)]
pub(crate) struct RouteTable {
    me: NodeId,
    infinity: u8,
    max_routes: usize,
    /// Identified neighbours: their node id.
    direct: HashMap<NeighbourId, NodeId>,
    /// What each neighbour advertised: destination to its own hop count (finite only).
    adverts: HashMap<NeighbourId, HashMap<NodeId, u8>>,
    best: HashMap<NodeId, Route>,
    dirty: HashSet<NodeId>,
    /// Destinations whose route appeared or changed since the last drain.
    reachable: Vec<NodeId>,
    marks: HashMap<(NodeId, NeighbourId), (Mark, Instant, u64)>,
    /// Neighbours whose routes are believed last (unauthenticated routers).
    untrusted: HashSet<NeighbourId>,
    /// Destinations an untrusted neighbour may announce.
    max_untrusted: usize,
    mark_order: BTreeMap<(Instant, u64), (NodeId, NeighbourId)>,
    mark_seq: u64,
    pub refused: u64,
}

impl RouteTable {
    pub(crate) fn new(me: NodeId, infinity: u8, max_routes: usize) -> RouteTable {
        RouteTable {
            me,
            infinity,
            max_routes,
            direct: HashMap::new(),
            adverts: HashMap::new(),
            best: HashMap::new(),
            dirty: HashSet::new(),
            reachable: Vec::new(),
            marks: HashMap::new(),
            untrusted: HashSet::new(),
            max_untrusted: 256.min(max_routes.max(1)),
            mark_order: BTreeMap::new(),
            mark_seq: 0,
            refused: 0,
        }
    }

    pub(crate) fn route(&self, dest: &NodeId) -> Option<Route> {
        self.best.get(dest).copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.best.len()
    }

    /// Every destination with its route.
    pub(crate) fn routes(&self) -> impl Iterator<Item = (&NodeId, &Route)> {
        self.best.iter()
    }

    /// Marks `neighbour` as an unauthenticated router (or not).
    pub(crate) fn set_untrusted(&mut self, neighbour: NeighbourId, untrusted: bool) {
        if untrusted {
            self.untrusted.insert(neighbour);
        } else {
            self.untrusted.remove(&neighbour);
        }
    }

    pub(crate) fn add_neighbour(&mut self, neighbour: NeighbourId, id: NodeId) {
        self.direct.insert(neighbour, id);
        self.recompute(id);
    }

    pub(crate) fn remove_neighbour(&mut self, neighbour: NeighbourId) {
        let mut affected: Vec<NodeId> = self
            .adverts
            .remove(&neighbour)
            .map(|a| a.into_keys().collect())
            .unwrap_or_default();
        // Sorted, so that what follows does not depend on hash order (simulations replay).
        affected.sort();
        if let Some(id) = self.direct.remove(&neighbour) {
            affected.push(id);
        }
        self.untrusted.remove(&neighbour);
        self.marks.retain(|(_, hop), _| *hop != neighbour);
        for dest in affected {
            self.recompute(dest);
        }
    }

    /// Applies one ROUTING from `neighbour`.
    pub(crate) fn apply(
        &mut self,
        neighbour: NeighbourId,
        entries: impl Iterator<Item = (NodeId, u32)>,
    ) {
        let Some(&own) = self.direct.get(&neighbour) else {
            return;
        };
        let cap = if self.untrusted.contains(&neighbour) {
            self.max_untrusted
        } else {
            self.max_routes
        };
        let mut changed = Vec::new();
        for (dest, ttl) in entries {
            if dest == self.me {
                continue;
            }
            if ttl == 0 && dest != own {
                // "0 hops from me" means "I am it": a neighbour claiming another's identity.
                self.refused += 1;
                continue;
            }
            let advert = self.adverts.entry(neighbour).or_default();
            if ttl >= u32::from(self.infinity) {
                if advert.remove(&dest).is_some() {
                    changed.push(dest);
                }
            } else {
                if !advert.contains_key(&dest) && advert.len() >= cap {
                    self.refused += 1;
                    continue;
                }
                // Below infinity, which is a u8.
                let hops = ttl as u8;
                if advert.insert(dest, hops) != Some(hops) {
                    changed.push(dest);
                }
            }
        }
        for dest in changed {
            self.recompute(dest);
        }
    }

    fn recompute(&mut self, dest: NodeId) {
        if dest == self.me {
            return;
        }
        let current = self.best.get(&dest).copied();
        let current_hop = current.map(|r| r.next_hop);
        // The neighbour that is the destination first; then confirmed next hops, unmarked
        // ones through authenticated neighbours, unmarked ones through untrusted routers,
        // demoted ones; within a class the fewest hops; on a tie keep the current next hop,
        // then the lowest neighbour id.
        let (marks, untrusted) = (&self.marks, &self.untrusted);
        let class = |r: &Route, direct: bool| match (direct, marks.get(&(dest, r.next_hop))) {
            (true, _) => 0,
            (_, Some((Mark::Confirmed, ..))) => 1,
            (_, None) if !untrusted.contains(&r.next_hop) => 2,
            (_, None) => 3,
            (_, Some((Mark::Demoted, ..))) => 4,
        };
        let rank = |r: &Route, direct: bool| {
            (
                class(r, direct),
                r.hops,
                Some(r.next_hop) != current_hop,
                r.next_hop,
            )
        };
        let mut candidate: Option<(Route, bool)> = None;
        let mut consider = |next_hop: NeighbourId, hops: u8, direct: bool| {
            let route = Route { next_hop, hops };
            if candidate.is_none_or(|(c, d)| rank(&route, direct) < rank(&c, d)) {
                candidate = Some((route, direct));
            }
        };
        for (neighbour, id) in &self.direct {
            if *id == dest {
                consider(*neighbour, 1, true);
            }
        }
        for (neighbour, advert) in &self.adverts {
            if let Some(hops) = advert.get(&dest) {
                let via = hops.saturating_add(1);
                if via < self.infinity {
                    consider(*neighbour, via, false);
                }
            }
        }
        let candidate = candidate.map(|(r, _)| r);
        if candidate == current {
            return;
        }
        match candidate {
            Some(route) => {
                if current.is_none() && self.best.len() >= self.max_routes {
                    self.refused += 1;
                    return;
                }
                // Any new next hop may move what waits for this destination.
                self.reachable.push(dest);
                self.best.insert(dest, route);
            }
            None => {
                self.best.remove(&dest);
            }
        }
        self.dirty.insert(dest);
    }

    /// Whether `hop` is the destination itself (a direct neighbour with that id).
    pub(crate) fn is_direct(&self, dest: &NodeId, hop: NeighbourId) -> bool {
        self.direct.get(&hop) == Some(dest)
    }

    /// Marks the next hop `hop` for `dest` until `until` (replacing any mark), and chooses
    /// the route again. A direct neighbour is never marked: it is the destination.
    pub(crate) fn mark(&mut self, dest: NodeId, hop: NeighbourId, mark: Mark, until: Instant) {
        if self.is_direct(&dest, hop) || !self.direct.contains_key(&hop) {
            return;
        }
        if let Some((_, at, seq)) = self.marks.get(&(dest, hop)) {
            self.mark_order.remove(&(*at, *seq));
        } else if self.marks.len() >= self.max_routes.max(1) {
            if let Some((_, oldest)) = self.mark_order.pop_first() {
                self.marks.remove(&oldest);
            }
        }
        self.mark_seq += 1;
        self.mark_order.insert((until, self.mark_seq), (dest, hop));
        self.marks.insert((dest, hop), (mark, until, self.mark_seq));
        self.recompute(dest);
    }

    /// The mark on `hop` for `dest`, if any.
    pub(crate) fn mark_of(&self, dest: &NodeId, hop: NeighbourId) -> Option<Mark> {
        self.marks.get(&(*dest, hop)).map(|(m, ..)| *m)
    }

    /// When the next mark expires.
    pub(crate) fn next_mark_expiry(&self) -> Option<Instant> {
        self.mark_order.first_key_value().map(|((at, _), _)| *at)
    }

    /// Forgets the marks that expired.
    pub(crate) fn expire_marks(&mut self, now: Instant) {
        while let Some(((at, _), _)) = self.mark_order.first_key_value() {
            if *at > now {
                break;
            }
            let Some((_, (dest, hop))) = self.mark_order.pop_first() else {
                break;
            };
            if self
                .marks
                .get(&(dest, hop))
                .is_some_and(|(_, until, _)| *until <= now)
            {
                self.marks.remove(&(dest, hop));
                self.recompute(dest);
            }
        }
    }

    /// Destinations whose route appeared or changed since the last call.
    pub(crate) fn take_reachable(&mut self) -> Vec<NodeId> {
        std::mem::take(&mut self.reachable)
    }

    pub(crate) fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Takes the changed destinations (for a triggered update).
    pub(crate) fn take_dirty(&mut self) -> Vec<NodeId> {
        let mut dirty: Vec<NodeId> = self.dirty.drain().collect();
        dirty.sort();
        dirty
    }

    /// What we tell `neighbour` about `dest`: our hop count, or infinity when unreachable or
    /// when we route through that neighbour (poisoned reverse).
    pub(crate) fn advertised(&self, neighbour: NeighbourId, dest: &NodeId) -> u32 {
        match self.best.get(dest) {
            Some(r) if r.next_hop != neighbour => u32::from(r.hops),
            _ => u32::from(self.infinity),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId::from_bytes([n; 16])
    }

    #[test]
    fn shortest_route_wins_and_falls_back_when_a_neighbour_goes() {
        let mut t = RouteTable::new(id(0), 16, 100);
        let (n1, n2) = (NeighbourId(1), NeighbourId(2));
        t.add_neighbour(n1, id(1));
        t.add_neighbour(n2, id(2));
        t.apply(n1, [(id(9), 3)].into_iter());
        t.apply(n2, [(id(9), 1)].into_iter());
        assert_eq!(
            t.route(&id(9)),
            Some(Route {
                next_hop: n2,
                hops: 2
            })
        );
        assert_eq!(t.advertised(n2, &id(9)), 16, "poisoned reverse");
        assert_eq!(t.advertised(n1, &id(9)), 2);
        t.remove_neighbour(n2);
        assert_eq!(
            t.route(&id(9)),
            Some(Route {
                next_hop: n1,
                hops: 4
            })
        );
        assert_eq!(t.route(&id(2)), None);
        t.apply(n1, [(id(9), 16)].into_iter());
        assert_eq!(t.route(&id(9)), None, "withdrawn");
        let dirty = t.take_dirty();
        assert!(dirty.contains(&id(9)) && dirty.contains(&id(2)));
    }

    #[test]
    fn a_longer_route_from_the_next_hop_replaces_the_shorter_one() {
        let mut t = RouteTable::new(id(0), 16, 100);
        let n1 = NeighbourId(1);
        t.add_neighbour(n1, id(1));
        t.apply(n1, [(id(9), 1)].into_iter());
        t.apply(n1, [(id(9), 5)].into_iter());
        assert_eq!(t.route(&id(9)).unwrap().hops, 6);
        t.apply(n1, [(id(9), 15)].into_iter());
        assert_eq!(t.route(&id(9)), None, "16 hops is infinity");
    }

    #[test]
    fn a_claim_of_being_another_node_is_refused_and_marks_reorder_routes() {
        let t0 = Instant::now();
        let mut t = RouteTable::new(id(0), 16, 100);
        let (n1, n2) = (NeighbourId(1), NeighbourId(2));
        t.add_neighbour(n1, id(1));
        t.add_neighbour(n2, id(2));
        t.apply(n2, [(id(9), 0)].into_iter());
        assert_eq!(t.route(&id(9)), None, "n2 is not node 9");
        t.apply(n1, [(id(9), 3)].into_iter());
        t.apply(n2, [(id(9), 1)].into_iter());
        assert_eq!(t.route(&id(9)).unwrap().next_hop, n2);
        t.mark(
            id(9),
            n2,
            Mark::Demoted,
            t0 + std::time::Duration::from_secs(5),
        );
        assert_eq!(
            t.route(&id(9)).unwrap().next_hop,
            n1,
            "demoted below a longer path"
        );
        t.mark(
            id(9),
            n1,
            Mark::Confirmed,
            t0 + std::time::Duration::from_secs(10),
        );
        t.expire_marks(t0 + std::time::Duration::from_secs(6));
        assert_eq!(
            t.route(&id(9)).unwrap().next_hop,
            n1,
            "a confirmed path beats a shorter claim"
        );
        t.expire_marks(t0 + std::time::Duration::from_secs(11));
        assert_eq!(t.route(&id(9)).unwrap().next_hop, n2);
        t.mark(id(1), n1, Mark::Demoted, t0);
        assert_eq!(
            t.mark_of(&id(1), n1),
            None,
            "a direct neighbour is never marked"
        );
    }

    #[test]
    fn table_is_bounded() {
        let mut t = RouteTable::new(id(0), 16, 3);
        let n1 = NeighbourId(1);
        t.add_neighbour(n1, id(1));
        t.apply(n1, (10..20).map(|n| (id(n), 1)));
        assert_eq!(t.len(), 3);
        assert!(t.refused > 0);
        assert_eq!(t.take_reachable().len(), 3);
    }
}
