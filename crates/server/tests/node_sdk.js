// The official Yandex Cloud Node SDK (@yandex-cloud/nodejs-sdk) against yc-images: a Session
// with an IAM token this server issued and the server's CA, clients pointed at the server's
// address (the SDK's endpoints are fixed to the real cloud; `session.client(Client, address)`
// overrides one), listing and getting a Compute image and listing registries.
//
// Usage: NODE_PATH=<node_modules> node node_sdk.js ADDRESS CA_FILE IAM_TOKEN FOLDER IMAGE_ID
// Exits non-zero, saying what differed, on any mismatch.

const fs = require("fs");
const { Session, cloudApi, serviceClients } = require("@yandex-cloud/nodejs-sdk");

const [address, caFile, token, folder, imageId] = process.argv.slice(2);

function check(condition, what) {
  if (!condition) {
    console.error(`FAILED: ${what}`);
    process.exit(1);
  }
}

async function main() {
  const session = new Session({ iamToken: token, ssl: { rootCerts: fs.readFileSync(caFile) } });
  const images = session.client(serviceClients.ComputeImageServiceClient, address);
  const { ListImagesRequest, GetImageRequest } = cloudApi.compute.image_service;
  const listed = await images.list(ListImagesRequest.fromPartial({ folderId: folder }));
  check(
    listed.images.some((i) => i.id === imageId),
    `List finds ${imageId}: ${JSON.stringify(listed.images.map((i) => i.id))}`,
  );
  const image = await images.get(GetImageRequest.fromPartial({ imageId }));
  check(image.id === imageId && image.folderId === folder, `Get: ${JSON.stringify(image)}`);
  check(image.status === cloudApi.compute.image.Image_Status.READY, `READY: ${image.status}`);

  const registries = session.client(serviceClients.RegistryServiceClient, address);
  const { ListRegistriesRequest } = cloudApi.containerregistry.registry_service;
  const found = await registries.list(ListRegistriesRequest.fromPartial({ folderId: folder }));
  check(Array.isArray(found.registries), `ListRegistries: ${JSON.stringify(found)}`);

  try {
    await images.get(GetImageRequest.fromPartial({ imageId: "fd8nosuchimage000000" }));
    check(false, "Get of an unknown image fails");
  } catch (e) {
    check(String(e.message).includes("NOT_FOUND"), `NOT_FOUND for an unknown image: ${e.message}`);
  }
  console.log("the official Node SDK listed and got images");
}

main().catch((e) => {
  console.error(`FAILED: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
