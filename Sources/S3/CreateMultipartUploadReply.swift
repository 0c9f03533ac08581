import Foundation

/// The body of a CreateMultipartUpload reply: `<InitiateMultipartUploadResult>` with the upload ID.
public struct CreateMultipartUploadReply: Sendable, Equatable {
    public let uploadID: String
    public let bucket: String?
    public let key: String?

    /// Throws `.malformedReply` for anything but a well-formed result with a non-empty UploadId.
    public init(xml: Data) throws(S3Error) {
        let reply = try S3XMLReply(xml)
        guard reply.root == "InitiateMultipartUploadResult", let uploadID = reply.values["UploadId"], !uploadID.isEmpty else {
            throw S3Error(.malformedReply, "the CreateMultipartUpload reply has no UploadId (root <\(reply.root.prefix(64))>)")
        }
        self.uploadID = uploadID
        self.bucket = reply.values["Bucket"]
        self.key = reply.values["Key"]
    }
}
