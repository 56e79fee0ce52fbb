//! Bearer-token authentication and the rules of what each caller may do.
//!
//! Three kinds of token: the admin token (everything), the join token (only `POST
//! /api/v1/join`, which trades it for a node token), and per-node tokens. A node may read
//! everything but write only its own Node, its own pods' status, the final delete of its own
//! pods, and its own usage metrics.

use std::{collections::HashMap, sync::Arc};

use skiff_api::Kind;
use skiff_store::{Precondition, Store, TxnOutcome, Write};
use tokio::sync::RwLock;

use crate::{error::ApiError, pki::Credentials, registry::Actor};

const NODE_TOKENS: &str = "/system/node-tokens/";

/// Where the digest of a node's current token is kept: what its daemon expects as the
/// control plane's bearer when the API proxies logs and exec to it.
fn token_of_key(node: &str) -> String {
    format!("/system/node-token-of/{node}")
}

/// Who presented which token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    Admin,
    Joiner,
    Node(String),
}

impl Caller {
    pub fn actor(&self) -> Actor {
        match self {
            Caller::Admin | Caller::Joiner => Actor::Admin,
            Caller::Node(n) => Actor::Node(n.clone()),
        }
    }
}

pub struct Auth {
    admin: String,
    join: String,
    store: Arc<dyn Store>,
    /// token digest -> node name; refilled from the store on a miss, since another API
    /// server may have issued the token.
    nodes: RwLock<HashMap<String, String>>,
}

fn digest(token: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares without an early exit, so timing tells nothing about a guessed prefix.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Auth {
    pub fn new(credentials: &Credentials, store: Arc<dyn Store>) -> Auth {
        Auth {
            admin: credentials.admin_token.clone(),
            join: credentials.join_token.clone(),
            store,
            nodes: RwLock::new(HashMap::new()),
        }
    }

    /// Reads `Authorization: Bearer <token>`.
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Caller, ApiError> {
        let token = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "no bearer token: pass the admin token (admin.conf in skiff-control's --data-dir; `skiff config view` shows which config is used) or a node token"
                        .into(),
                )
            })?;
        if same_secret(token, &self.admin) {
            return Ok(Caller::Admin);
        }
        if same_secret(token, &self.join) {
            return Ok(Caller::Joiner);
        }
        let digest = digest(token);
        if let Some(node) = self.nodes.read().await.get(&digest) {
            return Ok(Caller::Node(node.clone()));
        }
        let key = format!("{NODE_TOKENS}{digest}");
        if let Some(kv) = self.store.get(&key).await? {
            let node = String::from_utf8_lossy(&kv.value).to_string();
            self.nodes.write().await.insert(digest, node.clone());
            return Ok(Caller::Node(node));
        }
        Err(ApiError::Unauthorized(
            "the bearer token is not valid for this cluster".into(),
        ))
    }

    /// The lowercase hex SHA-256 of `node`'s current token, or `None` if it never joined.
    /// The control plane presents it to the node's daemon (`Authorization: Bearer DIGEST`).
    pub async fn node_token_digest(&self, node: &str) -> Result<Option<String>, ApiError> {
        Ok(self
            .store
            .get(&token_of_key(node))
            .await?
            .map(|kv| String::from_utf8_lossy(&kv.value).trim().to_string()))
    }

    /// Issues a node token for `node` (joining again issues a new one; the old one stops
    /// working).
    pub async fn issue_node_token(&self, node: &str) -> Result<String, ApiError> {
        if !skiff_api::validate::is_dns_subdomain(node) {
            return Err(ApiError::BadRequest(format!(
                "nodeName {node:?}: expected a DNS name (lower-case letters, digits, '-', '.')"
            )));
        }
        let token = crate::pki::random_token();
        let by_node = token_of_key(node);
        let previous = self.store.get(&by_node).await?;
        let mut preconditions = Vec::new();
        let mut writes = vec![
            Write::Put {
                key: format!("{NODE_TOKENS}{}", digest(&token)),
                value: node.as_bytes().to_vec(),
            },
            Write::Put {
                key: by_node.clone(),
                value: digest(&token).into_bytes(),
            },
        ];
        match &previous {
            Some(kv) => {
                preconditions.push(Precondition::ModRevision {
                    key: by_node,
                    revision: kv.mod_revision,
                });
                let old = String::from_utf8_lossy(&kv.value).to_string();
                writes.push(Write::Delete {
                    key: format!("{NODE_TOKENS}{old}"),
                });
                self.nodes.write().await.remove(&old);
            }
            None => preconditions.push(Precondition::Absent { key: by_node }),
        }
        match self.store.txn(preconditions, writes).await? {
            TxnOutcome::Committed { .. } => Ok(token),
            TxnOutcome::Failed { .. } => Err(ApiError::Conflict(format!(
                "node {node} joined twice at once: try again"
            ))),
        }
    }
}

/// What a caller may write. Reads are open to every authenticated caller but the joiner.
pub fn may_read(caller: &Caller) -> Result<(), ApiError> {
    match caller {
        Caller::Joiner => Err(ApiError::Forbidden(
            "the join token only joins nodes (POST /api/v1/join)".into(),
        )),
        _ => Ok(()),
    }
}

/// The write rules; `pod_node` is the node a pod is bound to (for pod writes).
pub fn may_write(
    caller: &Caller,
    kind: Kind,
    name: &str,
    status_only: bool,
    delete: bool,
    pod_node: Option<&str>,
) -> Result<(), ApiError> {
    let node = match caller {
        Caller::Admin => return Ok(()),
        Caller::Joiner => {
            return Err(ApiError::Forbidden(
                "the join token only joins nodes (POST /api/v1/join)".into(),
            ))
        }
        Caller::Node(node) => node,
    };
    let allowed = match kind {
        Kind::Node => name == node && !delete,
        Kind::Pod => pod_node == Some(node.as_str()) && (status_only || delete),
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "node {node} may write only its own Node, its own pods' status and the final delete of its own pods, not {} {kind} {name:?}",
            if delete { "delete" } else if status_only { "the status of" } else { "write" }
        )))
    }
}
