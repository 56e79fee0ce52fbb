//! `skiff apply` and `skiff delete`.

use std::path::PathBuf;

use anyhow::bail;
use skiff_api::Kind;

use crate::{
    cluster::{Ctx, Reported},
    kinds::{base_name, resource, targets},
    manifests,
};

#[derive(clap::Args)]
#[command(
    long_about = "Create or update the objects of manifests, all at once or not at all.\n\n\
    Every file is read and checked first: a mistake anywhere (named by file, document, line \
    and field) stops the command before anything is sent. Then one atomic call applies every \
    object; namespaces in the same manifests are created before what lives in them.\n\n\
    Examples:\n  \
    skiff apply -f shop.yaml\n  \
    skiff apply -f manifests/          # every *.yaml, *.yml, *.json in it, by name\n  \
    skiff apply -f base/ -f web.yaml -n shop\n  \
    cat web.yaml | skiff apply -f -"
)]
pub struct ApplyArgs {
    /// A manifest file, a folder of them, or - for standard input (repeatable).
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE|DIR|-",
        required = true
    )]
    files: Vec<PathBuf>,
}

pub async fn apply(ctx: &Ctx, args: ApplyArgs) -> anyhow::Result<()> {
    let sources = manifests::collect(&args.files, &mut std::io::stdin())?;
    let objects = manifests::parse(&sources, &ctx.namespace, ctx.explicit_namespace, "applied")?;
    for applied in ctx.client.apply(&objects).await? {
        println!(
            "{}/{} {}",
            resource(applied.kind),
            base_name(&applied.name),
            applied.action
        );
    }
    Ok(())
}

#[derive(clap::Args)]
#[command(
    long_about = "Delete objects, by name or by the manifests that made them.\n\n\
    A pod on a live node is stopped within its grace period first (it shows Terminating); \
    --force deletes it at once. Deleting a namespace deletes everything in it. Deleting a \
    Deployment deletes its ReplicaSets and pods.\n\n\
    Examples:\n  \
    skiff delete deployment web\n  \
    skiff delete pod web-7d9f-x2k4 web-7d9f-9qzl -n shop --force\n  \
    skiff delete deploy/web svc/web\n  \
    skiff delete -f shop.yaml"
)]
pub struct DeleteArgs {
    /// KIND NAME... or KIND/NAME...
    #[arg(value_name = "KIND NAME", conflicts_with = "files")]
    targets: Vec<String>,
    /// Delete the objects of this manifest file or folder, or - for standard input
    /// (repeatable).
    #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-")]
    files: Vec<PathBuf>,
    /// Delete at once, without the grace period in which a node stops a pod.
    #[arg(long)]
    force: bool,
}

pub async fn delete(ctx: &Ctx, args: DeleteArgs) -> anyhow::Result<()> {
    let mut doomed: Vec<(Kind, String, String)> = Vec::new();
    if !args.files.is_empty() {
        let sources = manifests::collect(&args.files, &mut std::io::stdin())?;
        let objects =
            manifests::parse(&sources, &ctx.namespace, ctx.explicit_namespace, "deleted")?;
        // Last first: a manifest's namespace usually comes first and goes last, after what
        // lives in it.
        for object in objects.iter().rev() {
            let meta = object.metadata();
            doomed.push((
                object.kind(),
                meta.namespace().to_string(),
                meta.name.clone(),
            ));
        }
    } else {
        for (kind, names) in targets(&args.targets)? {
            if names.is_empty() {
                bail!(
                    "which {}? Give their names, e.g. `skiff delete {} NAME`",
                    kind.plural(),
                    kind.plural()
                );
            }
            for name in names {
                doomed.push((kind, ctx.namespace.clone(), name));
            }
        }
    }
    if args.force {
        eprintln!(
            "warning: deleting at once, without waiting for nodes to stop the pods' containers"
        );
    }
    let mut failed = false;
    for (kind, namespace, name) in doomed {
        match ctx.client.delete(kind, &namespace, &name, args.force).await {
            Ok(_) => println!("{} {name:?} deleted", resource(kind)),
            Err(e) => {
                ctx.report(&e.into());
                failed = true;
            }
        }
    }
    if failed {
        return Err(Reported.into());
    }
    Ok(())
}
