// What a page imports from AWS Amplify v6 to do the job @tidings/client does: configure,
// temporary AWS credentials from a Cognito identity pool (Auth), and an MQTT-over-WebSocket
// subscription to AWS IoT Core signed with them (PubSub). aws-amplify v6 no longer carries
// PubSub; it is the separate @aws-amplify/pubsub, whose PubSub class is the AWS IoT provider.
// bench/web_client.py bundles this file to compare sizes; it is never run.
import { PubSub } from "@aws-amplify/pubsub";
import { Amplify } from "aws-amplify";
import { fetchAuthSession } from "aws-amplify/auth";

/**
 * Sign in through the identity pool and follow one topic.
 * @param {{region: string, identityPoolId: string, endpoint: string, topic: string,
 *   onChange: (message: unknown) => void}} options
 */
export async function follow({ region, identityPoolId, endpoint, topic, onChange }) {
  Amplify.configure({ Auth: { Cognito: { identityPoolId, allowGuestAccess: true } } });
  const session = await fetchAuthSession();
  if (!session.credentials) throw new Error("no credentials from the identity pool");
  const pubsub = new PubSub({ region, endpoint });
  return pubsub.subscribe({ topics: [topic] }).subscribe({ next: onChange });
}
