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

use std::collections::{HashMap, HashSet};

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
    pub refused: u64,
}

impl RouteTable {
    pub fn new(me: NodeId, infinity: u8, max_routes: usize) -> RouteTable {
        RouteTable {
            me,
            infinity,
            max_routes,
            direct: HashMap::new(),
            adverts: HashMap::new(),
            best: HashMap::new(),
            dirty: HashSet::new(),
            reachable: Vec::new(),
            refused: 0,
        }
    }

    pub fn route(&self, dest: &NodeId) -> Option<Route> {
        self.best.get(dest).copied()
    }

    pub fn len(&self) -> usize {
        self.best.len()
    }

    /// Every destination with its route.
    pub fn routes(&self) -> impl Iterator<Item = (&NodeId, &Route)> {
        self.best.iter()
    }

    pub fn add_neighbour(&mut self, neighbour: NeighbourId, id: NodeId) {
        self.direct.insert(neighbour, id);
        self.recompute(id);
    }

    pub fn remove_neighbour(&mut self, neighbour: NeighbourId) {
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
        for dest in affected {
            self.recompute(dest);
        }
    }

    /// Applies one ROUTING from `neighbour`.
    pub fn apply(&mut self, neighbour: NeighbourId, entries: impl Iterator<Item = (NodeId, u32)>) {
        if !self.direct.contains_key(&neighbour) {
            return;
        }
        let mut changed = Vec::new();
        for (dest, ttl) in entries {
            if dest == self.me {
                continue;
            }
            let advert = self.adverts.entry(neighbour).or_default();
            if ttl >= u32::from(self.infinity) {
                if advert.remove(&dest).is_some() {
                    changed.push(dest);
                }
            } else {
                if !advert.contains_key(&dest) && advert.len() >= self.max_routes {
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
        // Fewest hops; on a tie keep the current next hop, then the lowest neighbour id.
        let rank = |r: &Route| (r.hops, Some(r.next_hop) != current_hop, r.next_hop);
        let mut candidate: Option<Route> = None;
        let mut consider = |next_hop: NeighbourId, hops: u8| {
            let route = Route { next_hop, hops };
            if candidate.is_none_or(|c| rank(&route) < rank(&c)) {
                candidate = Some(route);
            }
        };
        for (neighbour, id) in &self.direct {
            if *id == dest {
                consider(*neighbour, 1);
            }
        }
        for (neighbour, advert) in &self.adverts {
            if let Some(hops) = advert.get(&dest) {
                let via = hops.saturating_add(1);
                if via < self.infinity {
                    consider(*neighbour, via);
                }
            }
        }
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

    /// Destinations whose route appeared or changed since the last call.
    pub fn take_reachable(&mut self) -> Vec<NodeId> {
        std::mem::take(&mut self.reachable)
    }

    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Takes the changed destinations (for a triggered update).
    pub fn take_dirty(&mut self) -> Vec<NodeId> {
        let mut dirty: Vec<NodeId> = self.dirty.drain().collect();
        dirty.sort();
        dirty
    }

    /// What we tell `neighbour` about `dest`: our hop count, or infinity when unreachable or
    /// when we route through that neighbour (poisoned reverse).
    pub fn advertised(&self, neighbour: NeighbourId, dest: &NodeId) -> u32 {
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
