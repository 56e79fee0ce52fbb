//! An admin client of the cluster's API that runs inside the lab: its connections leave from
//! a lab namespace, so no traffic ever crosses the host.

use std::time::Duration;

use serde_json::{json, Value};
use skiff_lab::Netns;

use crate::ClusterError;

pub struct Admin {
    base: String,
    client: reqwest::blocking::Client,
}

impl Admin {
    /// A client for the API in `admin_conf` (the control plane's admin.conf), whose
    /// connections are made from `netns`.
    pub fn new(netns: &Netns, admin_conf: &Value) -> Result<Admin, ClusterError> {
        let field = |name: &str| {
            admin_conf[name]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| ClusterError::Config(format!("admin.conf has no {name:?}")))
        };
        let (ca, token, base) = (
            field("certificateAuthorityData")?,
            field("token")?,
            field("server")?,
        );
        // Threads inherit the namespace of the thread that creates them: building the client
        // inside the namespace puts its connection pool's sockets there.
        let client = netns.run(|| {
            let certificate = reqwest::Certificate::from_pem(ca.as_bytes())
                .map_err(|e| ClusterError::Config(format!("admin.conf CA: {e}")))?;
            let mut headers = reqwest::header::HeaderMap::new();
            let bearer = format!("Bearer {token}")
                .parse()
                .map_err(|_| ClusterError::Config("admin.conf token is not a header".into()))?;
            headers.insert("authorization", bearer);
            reqwest::blocking::Client::builder()
                .tls_built_in_root_certs(false)
                .add_root_certificate(certificate)
                .default_headers(headers)
                .timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| ClusterError::Config(format!("API client: {e}")))
        })?;
        Ok(Admin { base, client })
    }

    /// One call: (status, JSON body). Status 0 means no answer (connection failed).
    pub fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            request = request.json(b);
        }
        match request.send() {
            Ok(r) => {
                let code = r.status().as_u16();
                (code, r.json().unwrap_or(Value::Null))
            }
            Err(e) => (0, Value::String(e.to_string())),
        }
    }

    fn expect(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        ok: &[u16],
    ) -> Result<Value, ClusterError> {
        let (status, answer) = self.call(method.clone(), path, body);
        if ok.contains(&status) {
            return Ok(answer);
        }
        Err(ClusterError::Api {
            method: method.to_string(),
            path: path.to_string(),
            status,
            body: answer.to_string(),
        })
    }

    pub fn get(&self, path: &str) -> Result<Value, ClusterError> {
        self.expect(reqwest::Method::GET, path, None, &[200])
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, ClusterError> {
        self.expect(reqwest::Method::POST, path, Some(body), &[200, 201])
    }

    pub fn delete(&self, path: &str) -> Result<Value, ClusterError> {
        self.expect(reqwest::Method::DELETE, path, None, &[200])
    }

    /// Server-side apply of whole objects, as `skiff apply` sends them.
    pub fn apply(&self, objects: &[Value]) -> Result<Value, ClusterError> {
        self.post("/api/v1/apply", &json!({ "objects": objects }))
    }
}
