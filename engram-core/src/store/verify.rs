//! `verify`: every checksum and cross-structure invariant of one snapshot, checked now.

use crate::error::{Error, Result};
use crate::store::file::ReadAhead;
use crate::store::network::PAGE;
use crate::store::records;
use crate::store::snapshot::{ANY_TIME, ReadTxn, Role};

/// What [`ReadTxn::verify`] checked (all of it passed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Episode and concept slots (every committed slot, old versions included), and int8
    /// mirror rows, whose crc32c and structure were checked.
    pub slots: u64,
    /// Live episodes read (with their payloads and keys).
    pub live_episodes: u64,
    /// Live concepts read (with their labels).
    pub live_concepts: u64,
    /// Live bindings, each found on both its episode's and its concept's list.
    pub live_bindings: u64,
    /// Live concepts with no live binding.
    pub empty_concepts: u64,
    /// Payload, key and label blobs whose crc32c was checked.
    pub blobs: u64,
    /// Networks whose tensors parsed.
    pub networks: u64,
    /// Network pages whose crc32c matched.
    pub pages: u64,
}

impl ReadTxn {
    /// Reads everything this snapshot holds and checks it: every slot's crc32c and archive
    /// structure (even if this handle checked it before), every live record's heap blobs,
    /// every binding on both of its lists, fan counts against the lists, the live counts
    /// against the commit record, every network page's crc32c and tensor layout. Returns
    /// the first problem as an error (`Corruption` names the file and offset). Episodes
    /// whose time to live has ended but that no commit has reaped yet count as stored.
    ///
    /// ```
    /// # fn main() -> engram_core::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = engram_core::Engram::open(dir.path(), engram_core::Options::default())?;
    /// let report = db.begin_read()?.verify()?;
    /// assert_eq!(report.live_episodes, 0);
    /// # Ok(()) }
    /// ```
    pub fn verify(&self) -> Result<VerifyReport> {
        let all_stored = ReadTxn {
            now: ANY_TIME,
            ..self.clone()
        };
        all_stored.verify_stored()
    }

    fn verify_stored(&self) -> Result<VerifyReport> {
        let v = &self.v;
        let mut r = VerifyReport::default();
        let eps = &v.file(Role::Episodes)?.map;
        let ep_layout = v.info.episode_layout;
        let mut ahead = ReadAhead::new(eps, ep_layout.stride as u64);
        for slot in 0..v.state.episode_slots {
            let off = slot * ep_layout.stride as u64;
            ahead.at(slot);
            records::episode_view(eps, off, ep_layout.archive_rechecked(eps, slot)?)?;
            r.slots += 1;
        }
        if v.info.manifest.int8_mirror {
            let map = &v.file(Role::Int8)?.map;
            let mut ahead = ReadAhead::new(map, v.info.int8_layout.stride as u64);
            for slot in 0..v.state.episode_slots {
                ahead.at(slot);
                v.info.int8_layout.recheck(map, slot)?;
                r.slots += 1;
            }
        }
        let cons = &v.file(Role::Concepts)?.map;
        let con_layout = v.info.concept_layout;
        let mut ahead = ReadAhead::new(cons, con_layout.stride as u64);
        for slot in 0..v.state.concept_slots {
            let off = slot * con_layout.stride as u64;
            ahead.at(slot);
            records::concept_view(cons, off, con_layout.archive_rechecked(cons, slot)?)?;
            r.slots += 1;
        }
        let table = |role, id: u64, what: &str| {
            Error::corrupt(
                v.file(role)
                    .map(|f| f.map.path().to_path_buf())
                    .unwrap_or_default(),
                v.entry_offset(role, id, 0).unwrap_or(0),
                what.to_string(),
            )
        };
        let mut by_episode = 0u64;
        for id in v.table_ids(Role::EpisodeTable) {
            let Some(ep) = self.episode(id)? else {
                continue;
            };
            ep.payload()?;
            ep.key()?;
            r.blobs += 1 + u64::from(ep.key()?.is_some());
            r.live_episodes += 1;
            let list = self.bindings_of_episode(id)?;
            if self.episode_fan_count(id)? != list.len() {
                return Err(table(
                    Role::EpisodeTable,
                    id,
                    "episode fan count disagrees with its binding list",
                ));
            }
            for b in &list {
                if b.episode != id || self.concept(b.concept)?.is_none() {
                    return Err(table(
                        Role::EpisodeTable,
                        id,
                        "binding list holds a foreign or dangling binding",
                    ));
                }
            }
            by_episode += list.len() as u64;
        }
        for id in v.table_ids(Role::ConceptTable) {
            let Some(c) = self.concept(id)? else { continue };
            c.label()?;
            r.blobs += 1;
            r.live_concepts += 1;
            let list = self.bindings_of_concept(id)?;
            r.empty_concepts += u64::from(list.is_empty());
            if self.concept_fan_count(id)? != list.len() {
                return Err(table(
                    Role::ConceptTable,
                    id,
                    "concept fan count disagrees with its binding list",
                ));
            }
            for b in &list {
                if b.concept != id || self.episode(b.episode)?.is_none() {
                    return Err(table(
                        Role::ConceptTable,
                        id,
                        "binding list holds a foreign or dangling binding",
                    ));
                }
                if self.binding_strength(b.episode, id)? != Some(b.strength) {
                    return Err(table(
                        Role::ConceptTable,
                        id,
                        "binding missing from its episode's list",
                    ));
                }
            }
            r.live_bindings += list.len() as u64;
        }
        let s = v.state;
        if by_episode != r.live_bindings
            || (
                r.live_episodes,
                r.live_concepts,
                r.live_bindings,
                r.empty_concepts,
            ) != (
                s.live_episodes,
                s.live_concepts,
                s.live_bindings,
                s.empty_concepts,
            )
        {
            return Err(Error::corrupt(
                v.info.dir.clone(),
                0,
                format!(
                    "live counts: found {} episodes, {} concepts ({} empty), {} bindings ({} by episode); the commit says {}, {} ({}), {}",
                    r.live_episodes,
                    r.live_concepts,
                    r.empty_concepts,
                    r.live_bindings,
                    by_episode,
                    s.live_episodes,
                    s.live_concepts,
                    s.empty_concepts,
                    s.live_bindings
                ),
            ));
        }
        let pages = &v.file(Role::Pages)?.map;
        let mut ahead = ReadAhead::new(pages, PAGE as u64);
        for page in 0..v.state.pages {
            ahead.at(page);
            let bytes = pages.bytes(page * PAGE as u64, PAGE)?;
            if crc32c::crc32c(bytes) != v.nets.page_crc(page) {
                return Err(Error::corrupt(
                    pages.path(),
                    page * PAGE as u64,
                    "page checksum mismatch",
                ));
            }
            r.pages += 1;
        }
        for (agent, name) in self.networks() {
            let net = self
                .network(agent, &name)?
                .ok_or_else(|| Error::corrupt(pages.path(), 0, "catalog entry vanished"))?;
            for t in net.tensors() {
                t?;
            }
            r.networks += 1;
        }
        Ok(r)
    }
}
