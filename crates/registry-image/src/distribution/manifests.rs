//! Manifests and tags: `PUT`, `GET`, `HEAD` and `DELETE` of
//! `/v2/<repo>/manifests/<reference>`, `GET /v2/<repo>/tags/list`.

use super::*;

impl Distribution {
    pub(super) async fn tags(
        &self,
        repo: &str,
        params: &Params,
        caller: &Caller,
    ) -> Result<Response, OciApiError> {
        const MOST: usize = 1000;
        self.authorize(repo, caller, Role::Viewer).await?;
        let limit = params.n.unwrap_or(MOST).clamp(1, MOST);
        let mut tags = self
            .images
            .tags(repo, params.last.as_deref(), limit + 1)
            .await
            .map_err(|s| OciApiError::from_status(s, "NAME_UNKNOWN", "NAME_INVALID"))?;
        if tags.is_empty()
            && params.last.is_none()
            && !self
                .images
                .repository_exists(repo)
                .await
                .map_err(|s| OciApiError::from_status(s, "NAME_UNKNOWN", "NAME_INVALID"))?
        {
            return Err(OciApiError::new(
                StatusCode::NOT_FOUND,
                "NAME_UNKNOWN",
                format!("repository {} has no images", yc_proto_types::quote(repo)),
            ));
        }
        let more = tags.len() > limit;
        tags.truncate(limit);
        let mut response =
            axum::Json(serde_json::json!({"name": repo, "tags": tags})).into_response();
        if more && let Some(last) = tags.last() {
            let next = format!("</v2/{repo}/tags/list?n={limit}&last={last}>; rel=\"next\"");
            if let Ok(value) = HeaderValue::from_str(&next) {
                response.headers_mut().insert(header::LINK, value);
            }
        }
        Ok(response)
    }

    pub(super) async fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
        method: &Method,
        caller: &Caller,
    ) -> Result<Response, OciApiError> {
        let registry = self.authorize(repo, caller, Role::Viewer).await?;
        let unknown = || {
            OciApiError::new(
                StatusCode::NOT_FOUND,
                "MANIFEST_UNKNOWN",
                format!("{repo} has no manifest {reference}"),
            )
        };
        let image = self
            .images
            .resolve(repo, reference)
            .await
            .map_err(|s| OciApiError::from_status(s, "MANIFEST_UNKNOWN", "MANIFEST_INVALID"))?
            .ok_or_else(unknown)?;
        let blob = self
            .blobs
            .blob(registry, &image.digest)
            .await?
            .ok_or_else(|| {
                OciApiError::new(
                    StatusCode::NOT_FOUND,
                    "MANIFEST_UNKNOWN",
                    format!(
                        "image {} was stored without its manifest's bytes (not pushed through \
                     this API), so its manifest cannot be served",
                        image.id
                    ),
                )
            })?;
        let bytes = self.blobs.read_all(&blob).await?;
        let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("mediaType")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| OCI_MANIFEST.to_owned());
        let headers = [
            ("content-type", media_type),
            (CONTENT_DIGEST, image.digest.clone()),
            ("content-length", bytes.len().to_string()),
            (IMAGE_ID_HEADER, image.id.clone()),
        ];
        let body = if *method == Method::HEAD {
            Body::empty()
        } else {
            Body::from(bytes)
        };
        Ok(with_headers(StatusCode::OK, &headers, body))
    }

    pub(super) async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        call: Call,
    ) -> Result<Response, OciApiError> {
        let registry = self.authorize(repo, &call.caller, Role::Editor).await?;
        let bytes = axum::body::to_bytes(call.body, MANIFEST_LIMIT)
            .await
            .map_err(|e| {
                OciApiError::new(
                    StatusCode::BAD_REQUEST,
                    "MANIFEST_INVALID",
                    format!("the manifest could not be read (at most {MANIFEST_LIMIT} bytes): {e}"),
                )
            })?;
        let manifest = PushedManifest::parse(bytes.to_vec()).map_err(|e| {
            OciApiError::from_status(oci_status(&e), "MANIFEST_UNKNOWN", "MANIFEST_INVALID")
        })?;
        // Everything is checked before anything is stored: a refused push leaves nothing.
        let tag = if reference.starts_with("sha256:") {
            if reference != manifest.digest() {
                return Err(OciApiError::new(
                    StatusCode::BAD_REQUEST,
                    "DIGEST_INVALID",
                    format!(
                        "the manifest's digest is {}, not {reference}",
                        manifest.digest()
                    ),
                ));
            }
            None
        } else {
            crate::service::check_tag(reference)
                .map_err(|s| OciApiError::new(StatusCode::BAD_REQUEST, "TAG_INVALID", s.message))?;
            Some(reference)
        };
        match &manifest {
            PushedManifest::Image(image) => {
                // Renewed first: garbage collection keeps them until the image is stored.
                let digests: Vec<&str> =
                    image.manifest.blobs().map(|d| d.digest.as_str()).collect();
                self.blobs.touch(registry, &digests).await?;
                for descriptor in image.manifest.blobs() {
                    self.check_blob(registry, descriptor).await?;
                }
            }
            PushedManifest::Index(index) => {
                // Every platform's manifest is in the repository already.
                for platform in &index.index.manifests {
                    let pushed =
                        self.images
                            .resolve(repo, &platform.digest)
                            .await
                            .map_err(|s| {
                                OciApiError::from_status(s, "MANIFEST_UNKNOWN", "MANIFEST_INVALID")
                            })?;
                    if pushed.is_none() {
                        return Err(OciApiError::new(
                            StatusCode::BAD_REQUEST,
                            "MANIFEST_BLOB_UNKNOWN",
                            format!(
                                "manifest {} has not been pushed to {repo}; push it first",
                                platform.digest
                            ),
                        ));
                    }
                }
            }
        }
        self.blobs.put(registry, manifest.bytes()).await?;
        let image = self
            .images
            .push_linked(repo, &manifest, tag)
            .await
            .map_err(|s| {
                if s.grpc_code() == tonic::Code::FailedPrecondition
                    && s.message.starts_with("blobs ")
                {
                    OciApiError::new(StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN", s.message)
                } else {
                    OciApiError::from_status(s, "NAME_UNKNOWN", "TAG_INVALID")
                }
            })?;
        let mut headers = vec![
            (
                "location",
                format!("/v2/{repo}/manifests/{}", manifest.digest()),
            ),
            (CONTENT_DIGEST, manifest.digest().to_owned()),
            (IMAGE_ID_HEADER, image.id),
            ("content-length", "0".to_owned()),
        ];
        // The referrers API lists it under its subject: clients need not keep a tag for it.
        if let Some(subject) = manifest.subject() {
            headers.push((OCI_SUBJECT, subject.digest.clone()));
        }
        Ok(with_headers(StatusCode::CREATED, &headers, Body::empty()))
    }

    /// Refuses a manifest's blob that has not been pushed to `registry` (unless the manifest
    /// says where else it is), or that has another size.
    async fn check_blob(
        &self,
        registry: &str,
        descriptor: &crate::oci::Descriptor,
    ) -> Result<(), OciApiError> {
        match self.blobs.blob(registry, &descriptor.digest).await? {
            None if descriptor.urls.is_empty() => Err(OciApiError::new(
                StatusCode::BAD_REQUEST,
                "MANIFEST_BLOB_UNKNOWN",
                format!(
                    "blob {} has not been pushed to {registry}; push it first",
                    descriptor.digest
                ),
            )),
            Some(blob) if blob.size != descriptor.size => Err(OciApiError::new(
                StatusCode::BAD_REQUEST,
                "MANIFEST_INVALID",
                format!(
                    "blob {} is {} bytes, the manifest says {}",
                    descriptor.digest, blob.size, descriptor.size
                ),
            )),
            _ => Ok(()),
        }
    }

    /// `GET /v2/<repo>/referrers/<digest>`: an image index of the repository's manifests whose
    /// `subject` is `digest` (`?artifactType=` keeps those of one type), as the OCI
    /// distribution spec 1.1 says.
    pub(super) async fn referrers(
        &self,
        repo: &str,
        digest: &str,
        params: &Params,
        caller: &Caller,
    ) -> Result<Response, OciApiError> {
        self.authorize(repo, caller, Role::Viewer).await?;
        let digest = checked_digest(digest)?;
        let referring = self
            .images
            .referrers(repo, digest)
            .await
            .map_err(|s| OciApiError::from_status(s, "NAME_UNKNOWN", "NAME_INVALID"))?;
        let filter = params.artifact_type.as_deref();
        let manifests: Vec<serde_json::Value> = referring
            .iter()
            .filter(|r| filter.is_none_or(|t| r.referrer.artifact_type == t))
            .map(|r| {
                let mut descriptor = serde_json::json!({
                    "mediaType": r.referrer.media_type,
                    "digest": r.digest,
                    "size": r.referrer.size,
                });
                if !r.referrer.artifact_type.is_empty() {
                    descriptor["artifactType"] = r.referrer.artifact_type.clone().into();
                }
                let annotations: serde_json::Value =
                    serde_json::from_str(&r.referrer.annotations).unwrap_or_default();
                if annotations.as_object().is_some_and(|a| !a.is_empty()) {
                    descriptor["annotations"] = annotations;
                }
                descriptor
            })
            .collect();
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::oci::OCI_INDEX,
            "manifests": manifests,
        });
        let mut headers = vec![("content-type", crate::oci::OCI_INDEX.to_owned())];
        if filter.is_some() {
            headers.push(("oci-filters-applied", "artifactType".to_owned()));
        }
        Ok(with_headers(
            StatusCode::OK,
            &headers,
            Body::from(body.to_string()),
        ))
    }

    pub(super) async fn delete_manifest(
        &self,
        repo: &str,
        reference: &str,
        caller: &Caller,
    ) -> Result<Response, OciApiError> {
        self.authorize(repo, caller, Role::Editor).await?;
        if reference.starts_with("sha256:") {
            checked_digest(reference)?;
        } else {
            crate::service::check_tag(reference)
                .map_err(|s| OciApiError::new(StatusCode::BAD_REQUEST, "TAG_INVALID", s.message))?;
        }
        let deleted = self
            .images
            .delete_reference(repo, reference)
            .await
            .map_err(|s| OciApiError::from_status(s, "MANIFEST_UNKNOWN", "MANIFEST_INVALID"))?;
        if !deleted {
            return Err(OciApiError::new(
                StatusCode::NOT_FOUND,
                "MANIFEST_UNKNOWN",
                format!("{repo} has no manifest {reference}"),
            ));
        }
        Ok(with_headers(
            StatusCode::ACCEPTED,
            &[("content-length", "0".to_owned())],
            Body::empty(),
        ))
    }
}
