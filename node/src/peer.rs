//! The libp2p `PeerId` of a vecino identity, and back.
//!
//! Both come from the same 32-byte ed25519 seed: the libp2p keypair is built from it, so its
//! `PeerId` (an identity multihash of the protobuf-encoded public key) names the same peer as
//! the raw key in `Event.author`.

use libp2p_identity::{Keypair, PeerId, PublicKey};
use vecino_proto::{AuthorKey, Identity};

/// The libp2p keypair of an identity.
pub fn keypair(identity: &Identity) -> Keypair {
    let mut seed = identity.seed();
    Keypair::ed25519_from_bytes(&mut seed).expect("a 32-byte seed is always a valid ed25519 key")
}

/// The libp2p `PeerId` of an identity.
pub fn peer_id(identity: &Identity) -> PeerId {
    keypair(identity).public().to_peer_id()
}

/// The `PeerId` of an author key.
pub fn peer_id_of(author: &AuthorKey) -> Option<PeerId> {
    let key = libp2p_identity::ed25519::PublicKey::try_from_bytes(author.as_bytes()).ok()?;
    Some(PublicKey::from(key).to_peer_id())
}

/// The author key inside an ed25519 `PeerId`; `None` for other key types (whose ids are hashes).
pub fn author_of(peer: &PeerId) -> Option<AuthorKey> {
    let multihash = peer.as_ref();
    if multihash.code() != 0 {
        return None; // not an identity multihash: the key is not recoverable
    }
    let public = PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
    let ed = public.try_into_ed25519().ok()?;
    Some(AuthorKey(ed.to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_and_author_key_name_the_same_peer() {
        let id = Identity::from_seed([5; 32]);
        let pid = peer_id(&id);
        assert!(pid.to_base58().starts_with("12D3KooW"), "{pid}");
        assert_eq!(author_of(&pid), Some(id.public()));
        assert_eq!(peer_id_of(&id.public()), Some(pid));
        let libp2p_pub = keypair(&id).public().try_into_ed25519().unwrap().to_bytes();
        assert_eq!(&libp2p_pub, id.public().as_bytes());
    }

    #[test]
    fn non_ed25519_peer_ids_have_no_author() {
        assert_eq!(author_of(&PeerId::random()), None);
    }
}
