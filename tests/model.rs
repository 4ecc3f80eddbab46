//! Random sequences of insert/update/delete/bind/reinforce/forget/commit/abort/reopen/
//! compact/backup, networks put and deleted, episodes with a time to live and a moving clock,
//! checked against a plain in-memory model after every step that publishes (the model is `harness/model.rs`, shared
//! with the `ops` fuzz target).

// The byte decoder in the harness is for the fuzz target and the corpus replay.
#[allow(dead_code)]
#[path = "harness/model.rs"]
mod harness;

use harness::{Step, run};
use proptest::prelude::*;

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (any::<u8>(), proptest::option::of(0u8..12)).prop_map(|(seed, key)| Step::Insert { seed, key }),
        2 => (any::<u8>(), 0u8..=4).prop_map(|(seed, ttl)| Step::InsertExpiring { seed, ttl }),
        1 => (0u8..3).prop_map(|by| Step::Tick { by }),
        2 => any::<u8>().prop_map(|seed| Step::Concept { seed }),
        1 => (any::<u8>(), any::<u8>(), any::<bool>()).prop_map(|(pick, seed, relabel)| Step::Update { pick, seed, relabel }),
        5 => (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(e, c, strength)| Step::Bind { e, c, strength }),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(e, c)| Step::Unbind { e, c }),
        2 => any::<u8>().prop_map(|pick| Step::DeleteEpisode { pick }),
        1 => any::<u8>().prop_map(|pick| Step::DeleteConcept { pick }),
        2 => (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(e, c, delta)| Step::Reinforce { e, c, delta }),
        1 => (any::<u8>(), 0u8..6).prop_map(|(agent, before)| Step::ForgetWhere { agent, before }),
        1 => (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(agent, name, seed)| Step::PutNetwork { agent, name, seed }),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(agent, name)| Step::DeleteNetwork { agent, name }),
        3 => Just(Step::Commit),
        1 => Just(Step::Abort),
        1 => any::<bool>().prop_map(|killed| Step::Reopen { killed }),
        1 => Just(Step::Compact),
        1 => any::<bool>().prop_map(|int8| Step::Backup { int8 }),
        1 => (any::<u8>(), proptest::option::of(0u8..12), proptest::option::of(0u8..6))
            .prop_map(|(seed, key, concept)| Step::GroupInsert { seed, key, concept }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn store_matches_an_in_memory_model(steps in proptest::collection::vec(step(), 1..120)) {
        run(steps);
    }
}
