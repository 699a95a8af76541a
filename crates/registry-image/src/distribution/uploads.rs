//! Blobs and their uploads: `/v2/<repo>/blobs/<digest>` and `/v2/<repo>/blobs/uploads/…`.

use super::*;

impl Distribution {
    pub(super) async fn get_blob(
        &self,
        repo: &str,
        digest: &str,
        method: &Method,
        headers: &HeaderMap,
        caller: &Caller,
    ) -> Result<Response, OciApiError> {
        let registry = self.authorize(repo, caller, Role::Viewer).await?;
        let digest = checked_digest(digest)?;
        let blob = self.blobs.blob(registry, digest).await?.ok_or_else(|| {
            OciApiError::new(
                StatusCode::NOT_FOUND,
                "BLOB_UNKNOWN",
                format!("blob {digest} has not been pushed to {registry}"),
            )
        })?;
        if *method == Method::GET {
            // Content in object storage, when pulls are redirected: the client reads it from
            // there (with its `Range`, if any), as from the distribution project's registry.
            if let Some(url) = self.blobs.redirect(&blob).await? {
                let answer = [
                    (CONTENT_DIGEST, blob.digest.clone()),
                    ("location", url),
                    ("content-length", "0".to_owned()),
                ];
                return Ok(with_headers(
                    StatusCode::TEMPORARY_REDIRECT,
                    &answer,
                    Body::empty(),
                ));
            }
        }
        let range = match headers.get(header::RANGE) {
            None => None,
            Some(value) => match byte_range(value.to_str().unwrap_or_default(), blob.size) {
                Ranged::Whole => None,
                Ranged::Part { start, length } => Some((start, length)),
                Ranged::Unsatisfiable => {
                    let mut refused = OciApiError::new(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        "BLOB_UNKNOWN",
                        format!("the range is outside blob {digest} of {} bytes", blob.size),
                    )
                    .into_response();
                    if let Ok(value) = HeaderValue::from_str(&format!("bytes */{}", blob.size)) {
                        refused.headers_mut().insert(header::CONTENT_RANGE, value);
                    }
                    return Ok(refused);
                }
            },
        };
        let Some((start, length)) = range else {
            let answer = [
                ("content-type", "application/octet-stream".to_owned()),
                (CONTENT_DIGEST, blob.digest.clone()),
                ("content-length", blob.size.to_string()),
                ("accept-ranges", "bytes".to_owned()),
            ];
            let body = if *method == Method::HEAD {
                Body::empty()
            } else {
                Body::from_stream(self.blobs.read(&blob))
            };
            return Ok(with_headers(StatusCode::OK, &answer, body));
        };
        let answer = [
            ("content-type", "application/octet-stream".to_owned()),
            (CONTENT_DIGEST, blob.digest.clone()),
            ("content-length", length.to_string()),
            (
                "content-range",
                format!("bytes {start}-{}/{}", start + length - 1, blob.size),
            ),
            ("accept-ranges", "bytes".to_owned()),
        ];
        let body = if *method == Method::HEAD {
            Body::empty()
        } else {
            Body::from_stream(self.blobs.read_range(&blob, start, length).await?)
        };
        Ok(with_headers(StatusCode::PARTIAL_CONTENT, &answer, body))
    }

    pub(super) async fn start_upload(
        &self,
        repo: &str,
        call: Call,
    ) -> Result<Response, OciApiError> {
        let registry = self.authorize(repo, &call.caller, Role::Editor).await?;
        if let (Some(mount), Some(from)) = (&call.params.mount, &call.params.from)
            && let Some(blob) = self.mount(registry, mount, from, &call.caller).await?
        {
            return Ok(blob_created(repo, &blob));
        }
        let upload = self.blobs.start(registry).await?;
        match &call.params.digest {
            None => Ok(upload_answer(repo, &upload)),
            Some(digest) => {
                let digest = checked_digest(digest)?;
                let finished = self
                    .blobs
                    .finish_with(&upload.id, call.body.into_data_stream(), digest)
                    .await;
                if finished.is_err() {
                    let _ = self.blobs.cancel(&upload.id).await;
                }
                Ok(blob_created(repo, &finished?))
            }
        }
    }

    /// Links a blob of the repository `from` into `registry`, if the caller may read it
    /// there; `None` (an upload follows) otherwise.
    pub(super) async fn mount(
        &self,
        registry: &str,
        digest: &str,
        from: &str,
        caller: &Caller,
    ) -> Result<Option<BlobInfo>, OciApiError> {
        let digest = checked_digest(digest)?;
        let Ok(source) = registry_id(from) else {
            return Ok(None);
        };
        if self
            .images
            .registry_for(source, caller, Role::Viewer)
            .await
            .is_err()
            || self.blobs.blob(source, digest).await?.is_none()
        {
            return Ok(None);
        }
        Ok(self.blobs.link(registry, digest).await?)
    }

    pub(super) async fn upload(
        &self,
        repo: &str,
        id: &str,
        call: Call,
    ) -> Result<Response, OciApiError> {
        let registry = self.authorize(repo, &call.caller, Role::Editor).await?;
        let upload = self.blobs.upload(id).await?;
        if upload.registry_id != registry {
            return Err(BlobError::UploadUnknown(id.to_owned()).into());
        }
        match call.method {
            Method::GET => {
                let mut response = upload_answer(repo, &upload);
                *response.status_mut() = StatusCode::NO_CONTENT;
                Ok(response)
            }
            Method::PATCH => {
                let range = content_range(&call.headers)?;
                let upload = self
                    .blobs
                    .append(
                        id,
                        range.map(|(start, _)| start),
                        range.map(|(_, length)| length),
                        call.body.into_data_stream(),
                    )
                    .await?;
                Ok(upload_answer(repo, &upload))
            }
            Method::PUT => {
                let digest = call.params.digest.as_deref().ok_or_else(|| {
                    OciApiError::new(
                        StatusCode::BAD_REQUEST,
                        "DIGEST_INVALID",
                        "finishing an upload needs ?digest=<digest of the blob>",
                    )
                })?;
                let digest = checked_digest(digest)?;
                // The last bytes may come with the PUT.
                let blob = self
                    .blobs
                    .finish_with(id, call.body.into_data_stream(), digest)
                    .await?;
                Ok(blob_created(repo, &blob))
            }
            Method::DELETE => {
                self.blobs.cancel(id).await?;
                Ok(with_headers(StatusCode::NO_CONTENT, &[], Body::empty()))
            }
            ref other => Err(method_not_allowed(other)),
        }
    }
}
