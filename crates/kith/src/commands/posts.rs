//! `kith post`, `kith posts`, `kith community ...`: every action goes to the running node's
//! posts service over the control API.

use super::node::client;
use super::Env;
use crate::cli::{CommunityCommand, PostArgs};
use crate::output::{print_json, report};
use anyhow::{bail, Context, Result};
use kith_node::api::{PostsReply, PostsRequest, POSTS_PATH};
use kith_node::control::ControlClient;
use serde_json::json;

fn ask(control: &ControlClient, request: &PostsRequest) -> Result<PostsReply> {
    Ok(control.post(POSTS_PATH, request)?)
}

/// `kith post COMMUNITY TEXT|--file F [--sealed]`.
pub fn post(env: &Env, args: PostArgs) -> Result<()> {
    let text = match (&args.text, &args.file) {
        (Some(text), _) => text.clone(),
        (None, Some(path)) => {
            let limit = env.config.node_limits.posts_max_item as u64;
            let bytes = crate::output::read_bounded(path, limit)?;
            String::from_utf8(bytes)
                .with_context(|| format!("{} is not UTF-8 text", path.display()))?
        }
        (None, None) => bail!("give the text, or --file"),
    };
    let reply = ask(
        &client(env),
        &PostsRequest::Post {
            community: args.community.clone(),
            text,
            sealed: args.sealed,
        },
    )?;
    let PostsReply::Posted {
        hash,
        community_id,
        announced_to,
    } = reply
    else {
        bail!("unexpected answer from the node");
    };
    report(
        env.json,
        json!({"hash": hash, "community": args.community, "community_id": community_id,
               "sealed": args.sealed, "announced_to": announced_to}),
        &format!(
            "posted {} in {} ({}), announced to {announced_to} linked peer(s)",
            &hash[..16],
            args.community,
            if args.sealed { "sealed" } else { "signed" }
        ),
    )
}

/// `kith posts COMMUNITY [--follow] [--all]`.
pub fn list(env: &Env, community: &str, follow: bool, all: bool) -> Result<()> {
    let control = client(env);
    if follow {
        ask(
            &control,
            &PostsRequest::Follow {
                community: community.to_owned(),
                secret: None,
            },
        )?;
    }
    let PostsReply::Posts(list) = ask(
        &control,
        &PostsRequest::List {
            community: community.to_owned(),
            include_muted: all,
        },
    )?
    else {
        bail!("unexpected answer from the node");
    };
    if env.json {
        return print_json(&list);
    }
    if list.posts.is_empty() {
        println!("no posts in {} here yet", list.community);
    }
    for p in &list.posts {
        let who = if p.mine {
            "me".to_owned()
        } else {
            p.author[..16].to_owned()
        };
        let how = if p.sealed {
            "sealed, verified"
        } else {
            "signed, verified"
        };
        // Text from the network: control characters are shown escaped, never sent to the
        // terminal as they are.
        let text: String = p.text.escape_debug().collect();
        println!("{}  {who}  ({how})  {text}", p.time);
    }
    Ok(())
}

/// `kith community ...`.
pub fn community(env: &Env, command: CommunityCommand) -> Result<()> {
    let control = client(env);
    match command {
        CommunityCommand::List => {
            let PostsReply::Communities(list) = ask(&control, &PostsRequest::Communities)? else {
                bail!("unexpected answer from the node");
            };
            if env.json {
                return print_json(&list);
            }
            for c in list {
                println!(
                    "{}{}  {} post(s){}  {}",
                    c.name,
                    if c.closed { " (closed)" } else { "" },
                    c.posts,
                    if c.followed { ", followed" } else { "" },
                    c.id
                );
            }
            Ok(())
        }
        CommunityCommand::Follow { name, secret } => {
            ask(
                &control,
                &PostsRequest::Follow {
                    community: name.clone(),
                    secret,
                },
            )?;
            report(
                env.json,
                json!({"followed": name}),
                &format!("following {name}"),
            )
        }
        CommunityCommand::Unfollow { name } => {
            ask(
                &control,
                &PostsRequest::Unfollow {
                    community: name.clone(),
                },
            )?;
            report(
                env.json,
                json!({"unfollowed": name}),
                &format!("no longer following {name}"),
            )
        }
        CommunityCommand::Create { name } => {
            // A random secret that is a valid key (all but a 2^-128 share of them are).
            let secret = loop {
                let candidate: [u8; 32] = rand::random();
                if kith_posts::Community::closed(&name, &candidate).is_ok() {
                    break hex::encode(candidate);
                }
            };
            ask(
                &control,
                &PostsRequest::Follow {
                    community: name.clone(),
                    secret: Some(secret.clone()),
                },
            )?;
            report(
                env.json,
                json!({"community": name, "secret": secret, "closed": true}),
                &format!(
                    "created closed community {name}; members join with:\n  kith community follow {name} --secret {secret}"
                ),
            )
        }
        CommunityCommand::Block { author, undo } => {
            ask(
                &control,
                &PostsRequest::Block {
                    author: author.clone(),
                    blocked: !undo,
                },
            )?;
            let what = if undo { "unblocked" } else { "blocked" };
            report(
                env.json,
                json!({ what: author }),
                &format!("{what} {author}"),
            )
        }
        CommunityCommand::Mute { author, undo } => {
            ask(
                &control,
                &PostsRequest::Mute {
                    author: author.clone(),
                    muted: !undo,
                },
            )?;
            let what = if undo { "unmuted" } else { "muted" };
            report(
                env.json,
                json!({ what: author }),
                &format!("{what} {author}"),
            )
        }
        CommunityCommand::Authors => {
            let PostsReply::Authors(list) = ask(&control, &PostsRequest::Authors)? else {
                bail!("unexpected answer from the node");
            };
            if env.json {
                return print_json(&list);
            }
            for a in list {
                let mut flags = Vec::new();
                if a.blocked {
                    flags.push("blocked");
                }
                if a.muted {
                    flags.push("muted");
                }
                println!("{}  {}", a.author, flags.join(", "));
            }
            Ok(())
        }
    }
}
