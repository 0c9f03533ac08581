/// One uploaded part, as CompleteMultipartUpload lists it: its number and the ETag UploadPart returned.
public struct CompletedPart: Sendable, Equatable {
    public let partNumber: Int
    /// The ETag header of the UploadPart reply, quotes included, as S3 sent it.
    public let etag: String

    public init(partNumber: Int, etag: String) {
        self.partNumber = partNumber
        self.etag = etag
    }
}
